//! The `Learner`: its state, `fit`, `one_epoch` and `one_batch`, all built on one `with_events` helper.

use std::any::Any;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use tiny_nn::{Module, Parameter};
use tiny_optim::{Optimizer, OptimizerState, Sgd};
use tiny_tensor::{Precision, Tensor, autocast};

use crate::metrics::{Metric, accuracy, accuracy_multi};
use tiny_data::{Batch, DataLoaders};

use crate::{Callback, Cancel, CbResult, EpochStats, Event, LearnerError, PhaseRecord, Recorder, Result, Stop};

/// A loss function of predictions and targets, such as `tiny_nn::cross_entropy`.
pub type LossFn = Box<dyn Fn(&Tensor, &[u32]) -> tiny_nn::Result<Tensor>>;

/// Builds an optimizer over parameters with a learning rate, the chapter's `opt_func`.
pub type OptFunc = Box<dyn Fn(Vec<Parameter>, f32) -> Box<dyn Optimizer>>;

/// The chapter's default `opt_func`: plain SGD, `p -= lr * p.grad`.
pub fn sgd() -> OptFunc {
    Box::new(|params, lr| Box::new(Sgd::new(params, lr)))
}

/// Everything a callback may read or change: what fastai's callbacks reach through `self.learn`.
pub struct LearnerState {
    /// The model being trained.
    pub model: Box<dyn Module>,
    /// The training and validation loaders with their vocabulary, kept whole: `dls.valid.image_dataset()` is the
    /// validation set's files, which `tta` and the interpretation views read.
    pub dls: DataLoaders,
    /// The loss of predictions against targets.
    pub loss_func: LossFn,
    /// How `fit` builds the optimizer, after `before_fit`.
    pub opt_func: OptFunc,
    /// The optimizer; `None` until the first `fit` (or `create_opt`).
    pub opt: Option<Box<dyn Optimizer>>,
    /// The learning rate the optimizer is created with.
    pub lr: f32,
    /// The metrics that `TrackResults` and the `Recorder` measure each phase, fastai's `learn.metrics`
    /// (`accuracy` unless [`Learner::with_metrics`] says otherwise). Those callbacks tally reset copies, so
    /// these are never accumulated into.
    pub metrics: Vec<Box<dyn Metric>>,
    /// The current epoch, counted from 0.
    pub epoch: usize,
    /// The number of epochs of the current fit.
    pub n_epochs: usize,
    /// The number of the current batch within its phase, from 0.
    pub iter: usize,
    /// The number of batches of the current phase, set before its `before_train` / `before_validate`.
    pub n_iter: usize,
    /// The current batch; callbacks may replace it in `before_batch`.
    pub batch: Batch,
    /// The model's output for the current batch.
    pub preds: Tensor,
    /// The loss of the current batch, a scalar tensor (still in the graph during training).
    pub loss: Tensor,
    /// Whether the current phase trains (gradients, backward, step) or validates.
    pub training: bool,
    /// The seed that callbacks drawing random numbers (Mixup) derive their streams from, with the
    /// epoch; a checkpoint stores it so that a resumed fit draws the same numbers.
    pub seed: u64,
    /// How long the current phase has waited for its loader's next batch. Near zero when the loader keeps
    /// up; on a GPU it bounds from above how long the GPU went without data, as queued work keeps it busy
    /// while the host waits.
    pub data_wait: Duration,
    /// One entry per finished epoch, written by the `Recorder` and read by `EarlyStopping`,
    /// `SaveModel` and `CsvLogger`.
    pub history: Vec<EpochStats>,
    /// One entry per finished training or validation phase, written by the `Recorder` (its tally of the loss
    /// and the metrics) and printed by `TrackResults`.
    pub phases: Vec<PhaseRecord>,
    /// Whether the Recorder measures the metrics over training phases too, fastai's `Recorder(train_metrics=True)`
    /// (false by default: metrics are measured on the validation set); `TrackResults` turns it on, as the chapter
    /// prints the training accuracy.
    pub train_metrics: bool,
    /// The callbacks that change the training step from batch to batch, by name with what they change (see
    /// [`Callback::varies_per_batch`]), gathered as each fit begins for `GraphStep`.
    pub varying_callbacks: Vec<(String, &'static str)>,
    /// An optimizer state loaded from a checkpoint, applied when the optimizer is next created.
    pub(crate) pending_opt_state: Option<OptimizerState>,
    /// What the learner was trained on (architecture, classes, normalisation, item transform), for `predict` and
    /// `export`; set by [`Learner::with_export_info`] or [`load_learner`](crate::load_learner).
    pub export_info: Option<crate::ExportInfo>,
    /// fastai's `splitter`: the model's parameter groups by name, body first and head last (one group by default).
    pub splitter: crate::Splitter,
    /// How many of the splitter's groups, from the first, are frozen (fastai's `freeze_to`); 0 trains all.
    pub frozen_groups: usize,
    /// Whether the batchnorm parameters of frozen groups keep training, fastai's `train_bn` (true by default).
    pub train_bn: bool,
    /// The precision of the model's products during each batch's prediction and loss, fastai's `to_bf16()` /
    /// `to_fp32()`: under `Bf16` they run inside `autocast(Precision::Bf16)` (see tiny-tensor's autocast policy),
    /// so convolutions and linear layers compute in bf16 and everything else, the loss, the weights and the
    /// optimizer stay f32. `Fp32` by default.
    pub precision: Precision,
    /// What callbacks keep across epochs and resumes, by callback name (`Ema`'s averaged weights): checkpoints
    /// save it and `load_checkpoint` restores it, as PyTorch Lightning's callback `state_dict`.
    pub callback_state: std::collections::BTreeMap<String, CallbackState>,
}

/// One callback's state in a checkpoint: named tensors and named numbers (as text).
#[derive(Debug, Clone, Default)]
pub struct CallbackState {
    /// The tensors, by name.
    pub tensors: Vec<(String, Tensor)>,
    /// The numbers and settings, by name, as their text.
    pub values: std::collections::BTreeMap<String, String>,
}

impl LearnerState {
    /// The Recorder's results of the current epoch, for the callbacks that read them in `after_epoch`
    /// (`EarlyStopping`, `SaveModel`, `CsvLogger`), or an error naming `callback` when no Recorder wrote them.
    pub fn epoch_stats(&self, callback: &'static str) -> Result<&EpochStats> {
        self.history.last().filter(|s| s.epoch == self.epoch).ok_or(LearnerError::NeedsRecorder { callback })
    }

    /// The optimizer, or an error naming `what` when it does not exist yet.
    pub fn opt_mut(&mut self, what: &'static str) -> Result<&mut Box<dyn Optimizer>> {
        self.opt.as_mut().ok_or_else(|| crate::LearnerError::InvalidArgument {
            what,
            msg: "the learner has no optimizer yet (it is created after before_fit)".into(),
        })
    }

    /// fastai's `pct_train`: how far through the fit's training batches this one is,
    /// `(epoch * n_iter + iter) / (n_epochs * n_iter)`, from 0 at the first batch towards 1. This is the `pos` that
    /// every schedule reads; it means something only while training, when `n_iter` counts training batches.
    ///
    /// ```
    /// use tiny_learner::{InMemory, Learner, DataLoaders};
    /// use tiny_nn::{Linear, cross_entropy};
    /// use tiny_tensor::Tensor;
    /// let x = Tensor::from_vec(vec![1.0, 0.0, -1.0, 0.0], &[2, 2]).unwrap();
    /// let dls = DataLoaders::new(InMemory::new(x.clone(), vec![1, 0], 1).unwrap(), InMemory::new(x, vec![1, 0], 2).unwrap());
    /// let mut learn = Learner::new(Box::new(Linear::new(2, 2).unwrap()), dls, cross_entropy, 0.1, vec![]);
    /// (learn.n_epochs, learn.n_iter, learn.epoch, learn.iter) = (4, 2, 1, 1);
    /// assert_eq!(learn.pct_train(), 3.0 / 8.0);
    /// ```
    pub fn pct_train(&self) -> f32 {
        let done = self.epoch * self.n_iter + self.iter;
        (done as f64 / (self.n_epochs * self.n_iter).max(1) as f64) as f32
    }
}

/// The chapter's `Learner`: a model, data, a loss, an optimizer factory and callbacks.
///
/// `fit(n)` runs `before_fit`, creates the optimizer with `opt_func(model.parameters(), lr)`, then for
/// each epoch a training phase and a validation phase (under `no_grad`), each batch computing the
/// predictions and the loss and, when training, backward and an optimizer step. Every phase is wrapped
/// by `with_events`: before, body, after-cancel when the body raised the phase's `Cancel`, after.
/// The learner dereferences to its [`LearnerState`], so `learn.model` and `learn.epoch` work.
pub struct Learner {
    state: LearnerState,
    cbs: Vec<Box<dyn Callback>>,
}

/// The five nested phases of a fit, each with its events and the cancellation it catches.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Fit,
    Epoch,
    Train,
    Validate,
    Batch,
}

impl Phase {
    /// The before, after-cancel and after events, and the `Cancel` kind that stops this phase.
    fn events(self) -> (Event, Event, Event, Cancel) {
        match self {
            Phase::Fit => (Event::BeforeFit, Event::AfterCancelFit, Event::AfterFit, Cancel::Fit),
            Phase::Epoch => (Event::BeforeEpoch, Event::AfterCancelEpoch, Event::AfterEpoch, Cancel::Epoch),
            Phase::Train => (Event::BeforeTrain, Event::AfterCancelTrain, Event::AfterTrain, Cancel::Train),
            Phase::Validate => (Event::BeforeValidate, Event::AfterCancelValidate, Event::AfterValidate, Cancel::Valid),
            Phase::Batch => (Event::BeforeBatch, Event::AfterCancelBatch, Event::AfterBatch, Cancel::Batch),
        }
    }
}

impl Learner {
    /// The chapter's `Learner(model, dls, loss_func, lr, cbs)`, with plain SGD as `opt_func` and seed 0. The metric
    /// is `accuracy`, or `accuracy_multi` at 0.5 when the loaders are multi-label.
    pub fn new(
        model: impl Module + 'static,
        dls: impl Into<DataLoaders>,
        loss_func: impl Fn(&Tensor, &[u32]) -> tiny_nn::Result<Tensor> + 'static,
        lr: f32,
        cbs: Vec<Box<dyn Callback>>,
    ) -> Self {
        let dls: DataLoaders = dls.into();
        let metrics = vec![if dls.multi_label() { accuracy_multi(crate::DEFAULT_THRESH) } else { accuracy() }];
        let state = LearnerState {
            model: Box::new(model),
            dls,
            loss_func: Box::new(loss_func),
            opt_func: sgd(),
            opt: None,
            lr,
            metrics,
            epoch: 0,
            n_epochs: 0,
            iter: 0,
            n_iter: 0,
            batch: Batch::empty(),
            preds: Tensor::scalar(0.0),
            loss: Tensor::scalar(0.0),
            training: false,
            data_wait: Duration::ZERO,
            seed: 0,
            history: Vec::new(),
            phases: Vec::new(),
            train_metrics: false,
            varying_callbacks: Vec::new(),
            pending_opt_state: None,
            export_info: None,
            splitter: Box::new(crate::single_group),
            frozen_groups: 0,
            train_bn: true,
            precision: Precision::Fp32,
            callback_state: Default::default(),
        };
        let mut learn = Learner { state, cbs: Vec::new() };
        // fastai's default callbacks: the Recorder, quiet (TrackResults or `Recorder::new()` print).
        learn.add_cb(Box::new(Recorder::new().show_table(false)));
        for cb in cbs {
            learn.add_cb(cb);
        }
        learn
    }

    /// Replaces the optimizer factory, e.g. `|ps, lr| Box::new(Adam::new(ps, lr))`.
    pub fn with_opt_func(mut self, f: impl Fn(Vec<Parameter>, f32) -> Box<dyn Optimizer> + 'static) -> Self {
        self.state.opt_func = Box::new(f);
        self
    }

    /// Replaces the metrics (by default `accuracy` alone), fastai's `Learner(..., metrics=[accuracy, error_rate])`;
    /// an empty list measures none.
    ///
    /// ```
    /// use tiny_learner::metrics::{accuracy, error_rate};
    /// use tiny_learner::{InMemory, Learner, DataLoaders, metrics_from_names};
    /// use tiny_nn::{Linear, cross_entropy};
    /// use tiny_tensor::Tensor;
    /// let x = Tensor::from_vec(vec![1.0, 0.0, -1.0, 0.0], &[2, 2]).unwrap();
    /// let dls = DataLoaders::new(InMemory::new(x.clone(), vec![1, 0], 2).unwrap(), InMemory::new(x, vec![1, 0], 2).unwrap());
    /// let learn = Learner::new(Box::new(Linear::new(2, 2).unwrap()), dls, cross_entropy, 0.1, vec![])
    ///     .with_metrics(vec![accuracy(), error_rate()]);
    /// assert_eq!(learn.metrics.len(), 2);
    /// let learn = learn.with_metrics(metrics_from_names("f1,top_k:2").unwrap());
    /// assert_eq!(learn.metrics[1].name(), "top_2_accuracy");
    /// ```
    pub fn with_metrics(mut self, metrics: Vec<Box<dyn Metric>>) -> Self {
        self.state.metrics = metrics;
        self
    }

    /// Sets the seed of the callbacks' random streams.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.state.seed = seed;
        self
    }

    /// fastai's `learn.to_bf16()`: bf16 mixed precision from the next batch on. Each batch's prediction and loss
    /// run under `autocast(Precision::Bf16)`, so its convolutions and matrix products (and their backward)
    /// compute in bf16 with f32 sums; the weights, their gradients, the optimizer's state, checkpoints and
    /// exports stay f32.
    ///
    /// ```
    /// use tiny_learner::{InMemory, Learner, DataLoaders};
    /// use tiny_nn::{Linear, cross_entropy};
    /// use tiny_tensor::{Precision, Tensor};
    /// let x = Tensor::from_vec(vec![1.0, 0.0, -1.0, 0.0], &[2, 2]).unwrap();
    /// let dls = DataLoaders::new(InMemory::new(x.clone(), vec![1, 0], 2).unwrap(), InMemory::new(x, vec![1, 0], 2).unwrap());
    /// let mut learn = Learner::new(Box::new(Linear::new(2, 2).unwrap()), dls, cross_entropy, 0.1, vec![]).to_bf16();
    /// assert_eq!(learn.precision, Precision::Bf16);
    /// learn.fit(1).unwrap();
    /// assert_eq!(learn.to_fp32().precision, Precision::Fp32);
    /// ```
    pub fn to_bf16(self) -> Self {
        self.with_precision(Precision::Bf16)
    }

    /// fastai's `learn.to_fp32()`: f32 products again (the default).
    pub fn to_fp32(self) -> Self {
        self.with_precision(Precision::Fp32)
    }

    /// Sets the precision of each batch's products (see [`Learner::to_bf16`]).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.state.precision = precision;
        self
    }

    /// The state callbacks see.
    pub fn state(&self) -> &LearnerState {
        &self.state
    }

    /// The state, mutably.
    pub fn state_mut(&mut self) -> &mut LearnerState {
        &mut self.state
    }

    /// Adds a callback, keeping the list sorted by `order` (ties keep insertion order). A [`Recorder`] replaces the
    /// learner's one, as fastai's `learn.recorder` is one.
    pub fn add_cb(&mut self, cb: Box<dyn Callback>) {
        if (cb.as_ref() as &dyn Any).is::<Recorder>() {
            self.remove_cb::<Recorder>();
        }
        let at = self.cbs.partition_point(|c| c.order() <= cb.order());
        self.cbs.insert(at, cb);
    }

    /// Removes and returns the first callback of type `T`.
    pub fn remove_cb<T: Callback>(&mut self) -> Option<Box<T>> {
        let i = self.cbs.iter().position(|c| (c.as_ref() as &dyn Any).is::<T>())?;
        let any: Box<dyn Any> = self.cbs.remove(i);
        any.downcast().ok()
    }

    /// The first callback of type `T`, to read its results after a fit.
    pub fn callback<T: Callback>(&self) -> Option<&T> {
        self.cbs.iter().find_map(|c| (c.as_ref() as &dyn Any).downcast_ref())
    }

    /// The first callback of type `T`, mutably.
    pub fn callback_mut<T: Callback>(&mut self) -> Option<&mut T> {
        self.cbs.iter_mut().find_map(|c| (c.as_mut() as &mut dyn Any).downcast_mut())
    }

    /// Takes out the callbacks that do not run in inference passes (see [`Callback::runs_in_inference`]), each
    /// with its place in the list, for [`Learner::unmute`] to put back.
    pub(crate) fn mute_for_inference(&mut self) -> Vec<(usize, Box<dyn Callback>)> {
        let mut muted = Vec::new();
        for (i, cb) in std::mem::take(&mut self.cbs).into_iter().enumerate() {
            if cb.runs_in_inference() { self.cbs.push(cb) } else { muted.push((i, cb)) }
        }
        muted
    }

    /// Puts back callbacks taken out by [`Learner::mute_for_inference`], each at its old place.
    pub(crate) fn unmute(&mut self, muted: Vec<(usize, Box<dyn Callback>)>) {
        for (i, cb) in muted {
            let at = i.min(self.cbs.len());
            self.cbs.insert(at, cb);
        }
    }

    /// The names of the callbacks in the order they run.
    pub fn callback_names(&self) -> Vec<String> {
        self.cbs.iter().map(|c| c.name().to_string()).collect()
    }

    /// Builds the optimizer from `opt_func`, loading a state that `load_checkpoint` left pending.
    ///
    /// With a splitter of several groups the optimizer gets one group per splitter group (through
    /// `Optimizer::split_groups`); a frozen group holds only its batchnorm parameters (with `train_bn`) or none,
    /// so frozen parameters get no optimizer state and are never updated; they also stop requiring grad (and the
    /// others start again), so backward computes no gradient for them.
    pub fn create_opt(&mut self) -> Result<()> {
        let groups = crate::fine_tune::trainable_groups(&self.state)?;
        // Frozen parameters stop requiring grad, so that backward skips their gradients (conv weights, say).
        let trainable: std::collections::HashSet<usize> = groups.iter().flatten().map(|p| p.id()).collect();
        for p in self.state.model.parameters() {
            p.set_requires_grad_(trainable.contains(&p.id()))?;
        }
        let s = &mut self.state;
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        let mut opt = (s.opt_func)(groups.concat(), s.lr);
        if sizes.len() > 1 {
            opt.split_groups(&sizes)?;
        }
        if let Some(saved) = s.pending_opt_state.take() {
            opt.load_state_dict(&saved)?;
        }
        s.opt = Some(opt);
        Ok(())
    }

    /// Trains for `n_epochs` epochs from epoch 0: the chapter's `fit`.
    pub fn fit(&mut self, n_epochs: usize) -> Result<()> {
        self.fit_from(n_epochs, 0)
    }

    /// Runs epochs `start_epoch..n_epochs` of an `n_epochs` fit, to resume from a checkpoint: schedules
    /// see the same positions as in the uninterrupted fit.
    pub fn fit_from(&mut self, n_epochs: usize, start_epoch: usize) -> Result<()> {
        self.state.n_epochs = n_epochs;
        self.state.epoch = start_epoch;
        self.state.varying_callbacks =
            self.cbs.iter().filter_map(|c| Some((c.name().to_string(), c.varies_per_batch()?))).collect();
        self.with_events(Phase::Fit, |l| {
            l.create_opt()?;
            for epoch in start_epoch..n_epochs {
                l.state.epoch = epoch;
                l.with_events(Phase::Epoch, |l| {
                    l.do_epoch(true)?;
                    l.do_epoch(false)
                })?;
            }
            Ok(())
        })
        .map_err(Into::into)
    }

    /// One pass over the training (`true`) or validation (`false`) batches of the current epoch, with
    /// its before/after events: the chapter's `one_epoch`. Training creates the optimizer if needed.
    pub fn one_epoch(&mut self, train: bool) -> Result<()> {
        self.do_epoch(train).map_err(Into::into)
    }

    /// fastai's `learn.validate()`: one pass over the validation batches in evaluation mode and without
    /// gradients, with the phase's events, returning its mean loss and accuracy. Works before any `fit`, so it
    /// gives the loss of the starting weights.
    ///
    /// ```
    /// use tiny_learner::{InMemory, Learner, DataLoaders};
    /// use tiny_nn::{Linear, cross_entropy};
    /// use tiny_tensor::Tensor;
    /// let x = Tensor::from_vec(vec![1.0, 0.0, -1.0, 0.0], &[2, 2]).unwrap();
    /// let dls = DataLoaders::new(InMemory::new(x.clone(), vec![1, 0], 2).unwrap(), InMemory::new(x, vec![1, 0], 2).unwrap());
    /// let mut learn = Learner::new(Box::new(Linear::new(2, 2).unwrap()), dls, cross_entropy, 0.1, vec![]);
    /// let valid = learn.validate().unwrap();
    /// assert_eq!((valid.n, valid.train), (2, false));
    /// assert!(valid.loss.is_finite());
    /// ```
    ///
    /// # Errors
    /// [`LearnerError::NeedsRecorder`] when the learner's Recorder, whose tally it returns, was removed.
    pub fn validate(&mut self) -> Result<PhaseRecord> {
        let before = self.state.phases.len();
        self.do_epoch(false)?;
        match self.state.phases.last() {
            Some(rec) if self.state.phases.len() > before => Ok(rec.clone()),
            _ => Err(LearnerError::NeedsRecorder { callback: "validate" }),
        }
    }

    /// Runs the current `batch` through the model (and, when training, backward and step) with its
    /// events: the chapter's `one_batch`.
    pub fn one_batch(&mut self) -> Result<()> {
        if self.state.training && self.state.opt.is_none() {
            self.create_opt()?;
        }
        self.do_batch().map_err(Into::into)
    }

    /// Calls every callback for `event`, in order; the first error or cancellation stops the rest.
    pub fn event(&mut self, event: Event) -> CbResult {
        for cb in &mut self.cbs {
            cb.on(event, &mut self.state)?;
        }
        Ok(())
    }

    /// fastai's `_with_events`: `before`, then `body`; a cancellation of this phase's kind fires
    /// `after_cancel`; then `after`. Errors and other cancellations pass through untouched.
    fn with_events(&mut self, phase: Phase, body: impl FnOnce(&mut Self) -> CbResult) -> CbResult {
        let (before, after_cancel, after, kind) = phase.events();
        let outcome = match self.event(before) {
            Ok(()) => body(self),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {}
            Err(Stop::Cancel(c)) if c == kind => self.event(after_cancel)?,
            Err(e) => return Err(e),
        }
        self.event(after)
    }

    fn do_epoch(&mut self, train: bool) -> CbResult {
        self.state.training = train;
        self.state.model.train(train);
        if train && self.state.opt.is_none() {
            self.create_opt()?;
        }
        if train {
            // Gradients left by anything before this phase (a cancelled batch, a user's backward) do not leak in.
            self.state.model.zero_grad();
        }
        let _no_grad = (!train).then(tiny_tensor::no_grad);
        // Known before `before_train` / `before_validate`, for progress bars and schedules.
        self.state.n_iter = if train { self.state.dls.train.len() } else { self.state.dls.valid.len() };
        let phase = if train { Phase::Train } else { Phase::Validate };
        self.with_events(phase, |l| l.all_batches(train))
    }

    fn all_batches(&mut self, train: bool) -> CbResult {
        let src = if train { &self.state.dls.train } else { &self.state.dls.valid };
        let mut batches = src.batches(self.state.epoch).enumerate();
        self.state.data_wait = Duration::ZERO;
        loop {
            let asked = Instant::now();
            let Some((i, batch)) = batches.next() else { break };
            self.state.data_wait += asked.elapsed();
            self.state.iter = i;
            self.state.batch = batch.map_err(LearnerError::from)?;
            self.do_batch()?;
        }
        Ok(())
    }

    fn do_batch(&mut self) -> CbResult {
        self.with_events(Phase::Batch, |l| {
            // The prediction and the loss in the learner's precision, as fastai's MixedPrecision callback does
            // from before_batch to after_loss; the ops keep it for their backward.
            let autocast = autocast(l.state.precision);
            let s = &mut l.state;
            s.preds = s.model.call(&s.batch.x)?;
            l.event(Event::AfterPred)?;
            let s = &mut l.state;
            s.loss = (s.loss_func)(&s.preds, s.batch.y.as_slice())?;
            l.event(Event::AfterLoss)?;
            drop(autocast);
            if !l.state.training {
                return Ok(());
            }
            l.event(Event::BeforeBackward)?;
            l.state.loss.backward()?;
            l.event(Event::AfterBackward)?;
            l.event(Event::BeforeStep)?;
            l.state.opt_mut("one_batch")?.step()?;
            l.event(Event::AfterStep)?;
            // After the step, as fastai: a callback that cancels the step (GradientAccumulation) keeps the
            // gradients adding up. The model's own zero_grad also clears frozen parameters, which no optimizer holds.
            l.state.opt_mut("one_batch")?.zero_grad();
            l.state.model.zero_grad();
            Ok(())
        })
    }
}

impl Deref for Learner {
    type Target = LearnerState;

    fn deref(&self) -> &LearnerState {
        &self.state
    }
}

impl DerefMut for Learner {
    fn deref_mut(&mut self) -> &mut LearnerState {
        &mut self.state
    }
}

impl std::fmt::Debug for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learner")
            .field("dls", &self.state.dls)
            .field("lr", &self.state.lr)
            .field("epoch", &self.state.epoch)
            .field("callbacks", &self.callback_names())
            .finish()
    }
}
