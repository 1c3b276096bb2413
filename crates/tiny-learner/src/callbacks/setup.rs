//! `SetupLearner`: moves the model and each batch to the device and transforms the inputs (normalize,
//! permute NHWC to NCHW), the chapter's `SetupLearnerCB`.

use tiny_data::Normalize;
use tiny_tensor::{Device, Tensor};

use crate::{Callback, CbResult, LearnerState};

/// A transform applied to every batch's inputs.
pub type InputTransform = Box<dyn Fn(&Tensor) -> crate::Result<Tensor>>;

/// Puts the model on `device` before the fit and, before each batch, moves the inputs there and
/// applies a transform, the chapter's `SetupLearnerCB(tfm_x)`. It runs first (order -20).
pub struct SetupLearner {
    device: Device,
    tfm: Option<InputTransform>,
}

impl SetupLearner {
    /// Moves model and batches to `device` and leaves the inputs as they are.
    pub fn new(device: Device) -> Self {
        SetupLearner { device, tfm: None }
    }

    /// Also applies `tfm` to the inputs, on the device.
    pub fn with_transform(mut self, tfm: impl Fn(&Tensor) -> crate::Result<Tensor> + 'static) -> Self {
        self.tfm = Some(Box::new(tfm));
        self
    }

    /// The chapter's `tfm_x`: `(x - mean) / std` per channel of NHWC images, then a permute to NCHW.
    ///
    /// ```
    /// use tiny_learner::{Callback, SetupLearner};
    /// let cb = SetupLearner::normalize(tiny_tensor::Device::Cpu, [0.5; 3], [0.25; 3]);
    /// assert_eq!(cb.order(), -20);
    /// ```
    pub fn normalize(device: Device, mean: [f32; 3], std: [f32; 3]) -> Self {
        let norm = Normalize { mean, std };
        SetupLearner::new(device).with_transform(move |x| Ok(norm.apply(x)?))
    }

    /// The device this callback moves everything to.
    pub fn device(&self) -> Device {
        self.device
    }

    /// A batch's input as the model receives it: on the device, then through the transform.
    ///
    /// # Errors
    /// A failed copy to the device, or the transform's error.
    pub fn prepare(&self, x: &Tensor) -> crate::Result<Tensor> {
        let x = x.to_device(self.device)?;
        match &self.tfm {
            Some(tfm) => tfm(&x),
            None => Ok(x),
        }
    }
}

impl Callback for SetupLearner {
    fn order(&self) -> i32 {
        -20
    }

    fn before_fit(&mut self, learn: &mut LearnerState) -> CbResult {
        learn.model.to_device(self.device)?;
        Ok(())
    }

    fn before_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        learn.batch.x = self.prepare(&learn.batch.x)?;
        Ok(())
    }
}
