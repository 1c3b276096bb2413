//! Per-channel normalisation statistics, from one training batch (the chapter) or a whole split.

use tiny_tensor::Tensor;

use crate::{Batch, DataError, RawBatch, Result};

/// Per-channel mean and standard deviation of NHWC RGB data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    /// Mean of each channel.
    pub mean: [f32; 3],
    /// Unbiased standard deviation of each channel, like torch's `.std()`.
    pub std: [f32; 3],
}

/// Running per-channel sums of NHWC pixels, accumulated in `f64`.
#[derive(Debug, Clone, Default)]
pub struct ChannelStats {
    n: u64,
    sum: [f64; 3],
    sum_sq: [f64; 3],
}

impl ChannelStats {
    /// Adds interleaved RGB values (any whole number of pixels).
    pub fn add(&mut self, x: &[f32]) {
        let mut sum = [0.0f64; 3];
        let mut sum_sq = [0.0f64; 3];
        for px in x.chunks_exact(3) {
            for c in 0..3 {
                let v = px[c] as f64;
                sum[c] += v;
                sum_sq[c] += v * v;
            }
        }
        for c in 0..3 {
            self.sum[c] += sum[c];
            self.sum_sq[c] += sum_sq[c];
        }
        self.n += (x.len() / 3) as u64;
    }

    /// Returns the number of pixels added.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Turns the sums into a [`Normalize`]; `what` names the data in the error.
    ///
    /// # Errors
    /// [`DataError::EmptyStats`] when fewer than two pixels were added.
    pub fn finish(&self, what: &'static str) -> Result<Normalize> {
        if self.n < 2 {
            return Err(DataError::EmptyStats { what });
        }
        let n = self.n as f64;
        let mut mean = [0.0f32; 3];
        let mut std = [0.0f32; 3];
        for c in 0..3 {
            let m = self.sum[c] / n;
            let var = ((self.sum_sq[c] - n * m * m) / (n - 1.0)).max(0.0);
            mean[c] = m as f32;
            std[c] = var.sqrt() as f32;
        }
        Ok(Normalize { mean, std })
    }
}

impl Normalize {
    /// Computes the statistics of one batch over (N, H, W), as the chapter does with its first
    /// training batch: `xb.mean((0, 1, 2))`, `xb.std((0, 1, 2))`.
    ///
    /// # Errors
    /// [`DataError::EmptyStats`] for a batch with fewer than two pixels.
    pub fn from_batch(batch: &Batch) -> Result<Self> {
        let mut s = ChannelStats::default();
        s.add(&batch.x.to_vec());
        s.finish("batch")
    }

    /// Computes the statistics of every batch of an iterator, such as one epoch of a split.
    ///
    /// # Errors
    /// The first error the iterator yields, or [`DataError::EmptyStats`].
    pub fn from_batches(batches: impl IntoIterator<Item = Result<Batch>>) -> Result<Self> {
        let mut s = ChannelStats::default();
        for b in batches {
            s.add(&b?.x.to_vec());
        }
        s.finish("split")
    }

    /// Computes the statistics of one raw batch over (N, H, W).
    ///
    /// ```
    /// use tiny_data::{Normalize, RawBatch};
    /// let b = RawBatch { x: vec![0.0, 0.5, 1.0, 1.0, 0.5, 0.0], shape: [1, 1, 2, 3], y: vec![0].into() };
    /// let n = Normalize::from_raw_batch(&b).unwrap();
    /// assert_eq!(n.mean, [0.5, 0.5, 0.5]);
    /// assert!((n.std[0] - 0.5f32.sqrt()).abs() < 1e-6);
    /// ```
    pub fn from_raw_batch(batch: &RawBatch) -> Result<Self> {
        let mut s = ChannelStats::default();
        s.add(&batch.x);
        s.finish("batch")
    }

    /// Normalises an NHWC batch and permutes it to NCHW: `((x - mean) / std).permute(0, 3, 1, 2)`.
    ///
    /// The permute is a strided view, as in the chapter; no pixel is copied for it.
    ///
    /// ```
    /// use tiny_tensor::Tensor;
    /// let norm = tiny_data::Normalize { mean: [0.5; 3], std: [0.25; 3] };
    /// let x = Tensor::from_vec(vec![0.75; 2 * 4 * 5 * 3], &[2, 4, 5, 3]).unwrap();
    /// let y = norm.apply(&x).unwrap();
    /// assert_eq!(y.shape(), &[2, 3, 4, 5]);
    /// assert!(y.to_vec().iter().all(|&v| (v - 1.0).abs() < 1e-6));
    /// ```
    ///
    /// # Errors
    /// [`DataError::Tensor`] when `x` is not of shape `[n, h, w, 3]`.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() == 4 && x.shape()[3] == 3 && !x.requires_grad() && x.device() == tiny_tensor::Device::Cpu {
            // Input data needs no graph: one flat pass per pixel beats two broadcast ops whose
            // innermost runs are only three values long.
            let mut data = x.to_vec();
            self.apply_in_place(&mut data);
            return Ok(Tensor::from_vec(data, x.shape())?.permute(&[0, 3, 1, 2])?);
        }
        // Elsewhere (a GPU batch, a graph), two broadcast ops on the tensor's own device.
        let mean = Tensor::from_vec(self.mean.to_vec(), &[3])?.to_device(x.device())?;
        let std = Tensor::from_vec(self.std.to_vec(), &[3])?.to_device(x.device())?;
        Ok(x.sub(&mean)?.div(&std)?.permute(&[0, 3, 1, 2])?)
    }

    /// Normalises raw NHWC data in place: `(x - mean) / std` per channel, no permute.
    pub fn apply_in_place(&self, x: &mut [f32]) {
        let inv = self.std.map(|s| 1.0 / s);
        for px in x.chunks_exact_mut(3) {
            for c in 0..3 {
                px[c] = (px[c] - self.mean[c]) * inv[c];
            }
        }
    }
}
