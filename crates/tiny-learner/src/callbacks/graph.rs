//! `GraphStep`: the training step captured once into a CUDA graph and replayed for every batch of its shape.

use crate::{Callback, Cancel, CbResult, LearnerError, LearnerState};
use tiny_tensor::cuda::{Graph, HostInput};
use tiny_tensor::{Device, Tensor, no_grad};

/// Runs the training phase from a CUDA graph: the step (forward, loss, backward, optimizer step, zero_grad) is
/// captured once per fit, for the shape of the fit's first batch, and each later training batch of that shape is
/// copied into the graph's static inputs (the images with `Tensor::assign`, the targets into a `HostInput`) and
/// replayed, with no autograd graph built and no kernel launched by the host. The batch is then cancelled
/// (`Cancel::Batch`) so that the learner does not run it again; `after_batch` still sees its predictions and loss,
/// copied out of the graph's static outputs, so `TrackResults`, the `Recorder` and the metrics count it.
///
/// The fit's first batch runs eagerly: the optimizer creates its momentum buffers at its first step, which the
/// graph must find in place. A batch of another shape (the last, smaller one) also runs eagerly. The graph bakes in
/// the optimizer's hyper-parameters and what runs between the step's parts, so `before_fit` refuses a learner
/// with a callback that changes them from batch to batch (schedules, the LR finder, Mixup, CutMix, gradient
/// clipping or accumulation: each says so through [`Callback::varies_per_batch`]), and the first capture refuses
/// an optimizer whose update changes per step (Adam's step count, through `Optimizer::varies_per_step`). Runs last
/// among the callbacks' `before_batch` (after `SetupLearner` and `AugTransforms`, which run eagerly on the batch).
/// `TerminateOnNaN` sees the replayed batches' losses only through the validation loss.
pub struct GraphStep {
    device: Device,
    /// The shape of the fit's first training batch, the one the graph is captured for.
    full: Option<Vec<usize>>,
    captured: Option<Captured>,
    /// How many training steps were replayed from a graph, over every fit.
    pub replayed: usize,
}

/// A captured step with its static inputs and outputs. The graph goes first: it waits for its replays.
struct Captured {
    graph: Graph,
    x: Tensor,
    y: HostInput,
    preds: Tensor,
    loss: Tensor,
}

impl GraphStep {
    /// Graph replays on `device`, which must be a GPU (`Graph::capture` refuses the CPU).
    pub fn new(device: Device) -> GraphStep {
        GraphStep { device, full: None, captured: None, replayed: 0 }
    }

    /// Captures the learner's step on static copies of the current batch.
    fn capture(&self, learn: &mut LearnerState) -> Result<Captured, LearnerError> {
        // In the batch's memory order (a channels-last NCHW view), so that the graph runs the eager kernels.
        let x = learn.batch.x.zeros_like()?;
        x.assign(&learn.batch.x)?;
        let y = HostInput::new(self.device, learn.batch.y.as_slice())?;
        let targets = y.as_slice()?;
        let LearnerState { model, loss_func, opt, .. } = learn;
        let (graph, (preds, loss)) = Graph::capture(self.device, || -> Result<_, LearnerError> {
            let preds = model.call(&x)?;
            let loss = loss_func(&preds, targets)?;
            loss.backward()?;
            let opt = opt.as_mut().ok_or_else(|| LearnerError::InvalidArgument {
                what: "--cuda-graph",
                msg: "the learner has no optimizer".into(),
            })?;
            opt.step()?;
            opt.zero_grad();
            model.zero_grad();
            Ok((preds.detach(), loss.detach()))
        })?;
        Ok(Captured { graph, x, y, preds, loss })
    }
}

impl Callback for GraphStep {
    fn order(&self) -> i32 {
        1000
    }

    fn runs_in_inference(&self) -> bool {
        false
    }

    /// Refuses the callbacks that change the step from batch to batch. A fit creates a new optimizer, whose
    /// buffers the graph of the last fit does not know, so the graph is captured again.
    fn before_fit(&mut self, learn: &mut LearnerState) -> CbResult {
        if let Some((name, why)) = learn.varying_callbacks.first() {
            return Err(graph_conflict(name, why).into());
        }
        // The binary loss builds its multi-hot targets on the host each step, which a replay would not see.
        if learn.dls.multi_label() {
            let why = "its binary loss uploads each batch's multi-hot targets from memory the graph does not own";
            return Err(graph_conflict("multi-label data", why).into());
        }
        // A layer that draws at random in training (Dropout) would repeat its captured draw on every replay.
        learn.model.train(true);
        if let Some((path, why)) = learn.model.first_random_draw() {
            return Err(graph_conflict(&format!("the model's layer {path}"), why).into());
        }
        self.captured = None;
        self.full = None;
        Ok(())
    }

    fn after_fit(&mut self, _learn: &mut LearnerState) -> CbResult {
        self.captured = None;
        Ok(())
    }

    fn before_batch(&mut self, learn: &mut LearnerState) -> CbResult {
        if !learn.training {
            return Ok(());
        }
        let shape = learn.batch.x.shape().to_vec();
        let Some(full) = &self.full else {
            self.full = Some(shape);
            return Ok(());
        };
        if *full != shape || learn.batch.y.len() != shape[0] {
            return Ok(());
        }
        if self.captured.is_none() {
            if let Some(why) = learn.opt.as_ref().and_then(|o| o.varies_per_step()) {
                return Err(graph_conflict("the optimizer", why).into());
            }
            self.captured = Some(self.capture(learn)?);
        }
        let Some(c) = self.captured.as_mut() else { return Ok(()) };
        c.x.assign(&learn.batch.x)?;
        c.y.set(learn.batch.y.as_slice())?;
        c.graph.replay()?;
        // Copies: the next replay overwrites the static outputs, and the metrics keep predictions for a while.
        let _no_grad = no_grad();
        learn.preds = c.preds.mul_scalar(1.0)?;
        learn.loss = c.loss.mul_scalar(1.0)?;
        self.replayed += 1;
        Err(Cancel::Batch.into())
    }
}

/// The error of a fit whose step `name` changes from batch to batch, as `why` says.
fn graph_conflict(name: &str, why: &str) -> LearnerError {
    LearnerError::InvalidArgument {
        what: "GraphStep",
        msg: format!(
            "a CUDA graph replays one captured step with its hyper-parameters fixed, and {name} {why}; leave one of \
             the two out"
        ),
    }
}
