//! fastai's `learn.summary()`: the model's layers on one training item, what trains, and the callbacks.

use std::collections::HashSet;

use crate::callbacks::SetupLearner;
use crate::{Learner, LearnerError, Result};

impl Learner {
    /// fastai's `learn.summary()`: [`tiny_nn::module_summary`] of the model on the first item of the first training
    /// batch (prepared as a fit prepares it: on the device, normalised), with the batch size of that batch; which
    /// layers train follows the freezing in force (`freeze`, `freeze_to`); then whether the model is frozen and the
    /// callbacks in the order they run. The model's training mode is left as it was.
    ///
    /// # Errors
    /// An empty training set, a batch that fails to load, or a forward pass that fails.
    pub fn summary(&mut self) -> Result<String> {
        let batch = self.state().dls.train.batches(0).next().ok_or_else(|| LearnerError::InvalidArgument {
            what: "summary",
            msg: "the training set has no batch to run the model on".into(),
        })??;
        let bs = batch.x.shape().first().copied().unwrap_or(0);
        let mut x = batch.x.narrow(0, 0, 1.min(bs))?;
        if let Some(setup) = self.callback::<SetupLearner>() {
            self.state().model.to_device(setup.device())?;
            x = setup.prepare(&x)?;
        }
        let s = self.state();
        let trainable: HashSet<usize> =
            crate::fine_tune::trainable_groups(s)?.iter().flatten().map(|p| p.id()).collect();
        let mut out = tiny_nn::module_summary(s.model.as_ref(), &x, bs, &|p| trainable.contains(&p.id()))?;
        out += &match s.frozen_groups {
            0 => "\nModel unfrozen\n\n".to_string(),
            n => format!("\nModel frozen up to parameter group #{n}\n\n"),
        };
        out += "Callbacks:\n";
        for name in self.callback_names() {
            out += &format!("  - {name}\n");
        }
        Ok(out)
    }
}
