//! `Ema`: an exponential moving average of the weights, timm's `ModelEmaV3` and fastxtend's `EMACallback`.

use tiny_tensor::{Tensor, UpdateOp, UpdateProgram, foreach_update_, no_grad};

use crate::{Callback, CallbackState, CbResult, LearnerError, LearnerState};

/// The name the average is kept under in [`LearnerState::callback_state`] and in checkpoints.
const NAME: &str = "Ema";

/// timm's decay warm-up: at update `t` (from 0) the decay is `1 - (1 + t / gamma)^-power`, at most the EMA's decay;
/// the first update (`t = 0`, decay 0) copies the weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmaWarmup {
    /// timm's `warmup_gamma` (1 by default).
    pub gamma: f32,
    /// timm's `warmup_power` (2/3 by default; 3/4 suits shorter runs).
    pub power: f32,
}

impl Default for EmaWarmup {
    fn default() -> Self {
        EmaWarmup { gamma: 1.0, power: 2.0 / 3.0 }
    }
}

/// Keeps an exponential moving average of the model's weights, updated after every optimizer step:
/// `ema = decay * ema + (1 - decay) * weights` for every parameter and batchnorm running statistic (the batch
/// counters are copied), as timm's `ModelEmaV2`/`V3` and fastxtend's `EMACallback`. Without warm-up the average
/// starts as a copy of the weights when the fit begins; with [`Ema::warmup`] the decay grows from 0 as timm's.
///
/// The update is one `foreach_update_` over every tensor (one pass on the CPU, one launch on a GPU). The average
/// lives in [`LearnerState::callback_state`], so checkpoints carry it with its update count and a resumed fit
/// continues it exactly. With [`Ema::validate_ema`] (on by default, as fastxtend) validation runs on the averaged
/// weights, the model's own put back afterwards (also when validation stops on an error or a cancellation: by the
/// next validation or the end of the fit at the latest); with [`Ema::replace_weights`] the model takes the average
/// at the end of each fit, after [`SaveModel::best`](crate::SaveModel::best) has put back the best epoch's weights
/// and average, so that `export` writes what validation measured. `fine_tune` runs two fits: call
/// [`Ema::load_average`] after it instead. [`Ema::averaged`] reads the average.
#[derive(Debug)]
pub struct Ema {
    decay: f32,
    warmup: Option<EmaWarmup>,
    validate_ema: bool,
    replace_weights: bool,
    /// The model's own weights while validation runs on the average.
    backup: Vec<Tensor>,
}

impl Ema {
    /// An average with this decay (fastxtend's default is 0.9998, timm's 0.9999).
    ///
    /// # Errors
    /// [`LearnerError::InvalidArgument`] unless `0 <= decay < 1`.
    pub fn new(decay: f32) -> crate::Result<Self> {
        if !(0.0..1.0).contains(&decay) {
            return Err(LearnerError::InvalidArgument {
                what: "Ema",
                msg: format!("the decay must be in [0, 1), got {decay}"),
            });
        }
        Ok(Ema { decay, warmup: None, validate_ema: true, replace_weights: false, backup: Vec::new() })
    }

    /// timm's warm-up of the decay.
    pub fn warmup(mut self, warmup: EmaWarmup) -> Self {
        self.warmup = Some(warmup);
        self
    }

    /// Whether validation runs on the averaged weights (true by default).
    pub fn validate_ema(mut self, on: bool) -> Self {
        self.validate_ema = on;
        self
    }

    /// Whether the model takes the averaged weights at the end of each fit (false by default).
    pub fn replace_weights(mut self, on: bool) -> Self {
        self.replace_weights = on;
        self
    }

    /// The decay of update `t` (counted from 0).
    pub fn decay_at(&self, t: u64) -> f32 {
        match self.warmup {
            None => self.decay,
            Some(w) => {
                let d = 1.0 - (1.0 + t as f64 / f64::from(w.gamma)).powf(-f64::from(w.power));
                (d as f32).clamp(0.0, self.decay)
            }
        }
    }

    /// Puts the average into the model, where a fit has made one; returns whether it did.
    ///
    /// # Errors
    /// A failed copy (tensors on different devices).
    pub fn load_average(learn: &LearnerState) -> crate::Result<bool> {
        if !learn.callback_state.contains_key(NAME) {
            return Ok(false);
        }
        take_average(learn)?;
        Ok(true)
    }

    /// The model's own weights back from `backup`, where validation left the average in it.
    fn restore_own(&mut self, learn: &LearnerState) -> tiny_tensor::Result<()> {
        if self.backup.is_empty() {
            return Ok(());
        }
        let model = learn.model.state_dict();
        let pairs: Vec<(&Tensor, &Tensor)> = model.iter().map(|(_, t)| t).zip(&self.backup).collect();
        copy_all(&pairs)?;
        self.backup.clear();
        Ok(())
    }

    /// The averaged weights and statistics by state_dict name, and how many updates made them, if a fit began.
    pub fn averaged(learn: &LearnerState) -> Option<(&[(String, Tensor)], u64)> {
        let state = learn.callback_state.get(NAME)?;
        Some((&state.tensors, state.values.get("updates")?.parse().ok()?))
    }
}

/// Whether a state_dict entry is a counter, copied rather than averaged.
fn is_counter(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

/// `dst = src` for every pair, in place.
fn copy_all(pairs: &[(&Tensor, &Tensor)]) -> tiny_tensor::Result<()> {
    let copy = UpdateProgram { tensors: 2, ops: vec![UpdateOp::Copy { dst: 0, x: 1 }], writes: vec![0] };
    let items: Vec<[&Tensor; 2]> = pairs.iter().map(|(d, s)| [*d, *s]).collect();
    let items: Vec<&[&Tensor]> = items.iter().map(|i| &i[..]).collect();
    foreach_update_(&items, &copy)
}

/// A copy of `src` with `like`'s shape, layout and device.
fn copy_like(like: &Tensor, src: &Tensor) -> tiny_tensor::Result<Tensor> {
    let dst = like.zeros_like()?;
    let src = src.to_device(like.device())?;
    copy_all(&[(&dst, &src)])?;
    Ok(dst)
}

/// The model's tensors take the average's values, where there is one, matched by name (an average read back from a
/// checkpoint keeps the file's order) and brought to each tensor's device.
fn take_average(learn: &LearnerState) -> crate::Result<()> {
    let Some(state) = learn.callback_state.get(NAME) else { return Ok(()) };
    let by_name: std::collections::HashMap<&str, &Tensor> =
        state.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let model = learn.model.state_dict();
    let mut sources = Vec::with_capacity(model.len());
    for (name, t) in &model {
        let e = by_name
            .get(name.as_str())
            .ok_or_else(|| LearnerError::InvalidArgument { what: "Ema", msg: format!("the average has no {name}") })?;
        sources.push(e.to_device(t.device())?);
    }
    let pairs: Vec<(&Tensor, &Tensor)> = model.iter().map(|(_, t)| t).zip(&sources).collect();
    copy_all(&pairs)?;
    Ok(())
}

impl Callback for Ema {
    /// After `SaveModel` (62), so that at the end of a fit the best epoch's average is the one put in the model;
    /// an optimizer step is over before any callback's `after_step`, so the order does not matter there.
    fn order(&self) -> i32 {
        65
    }

    fn runs_in_inference(&self) -> bool {
        false
    }

    fn varies_per_batch(&self) -> Option<&'static str> {
        Some("averages the weights after every optimizer step")
    }

    /// Starts the average from the weights, or takes up the one a checkpoint restored (in the model's layouts,
    /// on its device).
    fn before_fit(&mut self, learn: &mut LearnerState) -> CbResult {
        let model = learn.model.state_dict();
        let restored = learn.callback_state.remove(NAME);
        let state = match restored {
            Some(saved) => {
                let bad = |msg: String| LearnerError::InvalidArgument { what: "Ema", msg };
                if saved.tensors.len() != model.len() {
                    return Err(bad(format!(
                        "the checkpoint's average holds {} tensors, the model {}",
                        saved.tensors.len(),
                        model.len()
                    ))
                    .into());
                }
                // By name: a file keeps its tensors in its own order.
                let mut by_name: std::collections::HashMap<String, Tensor> = saved.tensors.into_iter().collect();
                let mut tensors = Vec::with_capacity(model.len());
                for (name, t) in &model {
                    match by_name.remove(name) {
                        Some(s) if s.shape() == t.shape() => tensors.push((name.clone(), copy_like(t, &s)?)),
                        Some(s) => {
                            let msg = format!(
                                "the checkpoint's average has {name} as {:?}, the model {:?}",
                                s.shape(),
                                t.shape()
                            );
                            return Err(bad(msg).into());
                        }
                        None => return Err(bad(format!("the checkpoint's average has no {name}")).into()),
                    }
                }
                CallbackState { tensors, values: saved.values }
            }
            None => {
                let tensors =
                    model.iter().map(|(n, t)| Ok((n.clone(), copy_like(t, t)?))).collect::<tiny_tensor::Result<_>>()?;
                CallbackState { tensors, values: [("updates".to_string(), "0".to_string())].into() }
            }
        };
        learn.callback_state.insert(NAME.to_string(), state);
        Ok(())
    }

    /// `ema = decay * ema + (1 - decay) * weights`, in one fused pass.
    fn after_step(&mut self, learn: &mut LearnerState) -> CbResult {
        let model = learn.model.state_dict();
        let Some(state) = learn.callback_state.get_mut(NAME) else { return Ok(()) };
        let updates: u64 = state.values.get("updates").and_then(|u| u.parse().ok()).unwrap_or(0);
        let decay = self.decay_at(updates);
        // The second weight in f32 from the f64 difference, as PyTorch's `(1. - decay)` scalar meets a float tensor.
        let rest = (1.0 - f64::from(decay)) as f32;
        let average = UpdateProgram {
            tensors: 2,
            ops: vec![UpdateOp::Axpby { dst: 0, a: decay, x: 0, b: rest, y: 1 }],
            writes: vec![0],
        };
        let (mut averaged, mut counters): (Vec<[&Tensor; 2]>, Vec<(&Tensor, &Tensor)>) = (Vec::new(), Vec::new());
        for ((name, e), (_, w)) in state.tensors.iter().zip(&model) {
            if is_counter(name) {
                counters.push((e, w));
            } else {
                averaged.push([e, w]);
            }
        }
        let items: Vec<&[&Tensor]> = averaged.iter().map(|i| &i[..]).collect();
        let _no_grad = no_grad();
        foreach_update_(&items, &average)?;
        copy_all(&counters)?;
        state.values.insert("updates".to_string(), (updates + 1).to_string());
        Ok(())
    }

    /// Validation on the averaged weights: the model's own are kept aside.
    fn before_validate(&mut self, learn: &mut LearnerState) -> CbResult {
        self.restore_own(learn)?;
        if !self.validate_ema {
            return Ok(());
        }
        if !learn.callback_state.contains_key(NAME) {
            return Ok(());
        }
        self.backup =
            learn.model.state_dict().iter().map(|(_, t)| copy_like(t, t)).collect::<tiny_tensor::Result<_>>()?;
        Ok(take_average(learn)?)
    }

    /// The model's own weights back, for the next epoch's training.
    fn after_validate(&mut self, learn: &mut LearnerState) -> CbResult {
        self.restore_own(learn)?;
        Ok(())
    }

    /// The model's own weights back if a validation left the average in it, then, with `replace_weights`, the
    /// average.
    fn after_fit(&mut self, learn: &mut LearnerState) -> CbResult {
        self.restore_own(learn)?;
        if !self.replace_weights {
            return Ok(());
        }
        Ok(take_average(learn)?)
    }
}
