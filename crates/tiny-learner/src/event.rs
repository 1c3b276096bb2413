//! The events of the training loop, written once in one table, and the typed cancellations that callbacks raise.

use std::fmt;

/// Writes every event from one table of `(Variant, method_name, "doc sentence")` rows.
///
/// From the table come the `Event` enum (each variant with its sentence), `Event::ALL`, `Event::name()` (the
/// method's name, so an event and its method cannot disagree), and `callback_methods!`, which the `Callback`
/// trait (`callbacks/mod.rs`) invokes in its body to get `on`'s dispatch and one no-op default method per event,
/// documented with the same sentence.
macro_rules! events {
    ($(($variant:ident, $method:ident, $doc:literal)),+ $(,)?) => {
        /// A point in the training loop at which every callback is called, in `order`.
        ///
        /// `fit` nests them as fastai does: fit > epoch > train or validate > batch, and inside a training
        /// batch pred, loss, backward and step. Each phase `X` fires `BeforeX`, its body, then `AfterX`; when
        /// the body is cancelled with the phase's `Cancel` kind, `AfterCancelX` fires before `AfterX`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Event {
            $(#[doc = $doc] $variant,)+
        }

        impl Event {
            /// Every event, in the order they are declared.
            pub const ALL: &'static [Event] = &[$(Event::$variant),+];

            /// The fastai name of the event, such as `before_fit` or `after_cancel_batch`, which is also the name of
            /// the `Callback` method that handles it.
            pub fn name(self) -> &'static str {
                match self {
                    $(Event::$variant => stringify!($method),)+
                }
            }
        }

        /// The `Callback` trait's event methods: `on`, which dispatches each event to its method, and a no-op
        /// default method per event.
        macro_rules! callback_methods {
            () => {
                /// Handles one event by calling the method of that name; override this instead to see every event.
                fn on(&mut self, event: Event, learn: &mut LearnerState) -> CbResult {
                    match event {
                        $(Event::$variant => self.$method(learn),)+
                    }
                }

                $(
                    #[doc = $doc]
                    fn $method(&mut self, _learn: &mut LearnerState) -> CbResult {
                        Ok(())
                    }
                )+
            };
        }
        pub(crate) use callback_methods;
    };
}

events! {
    (BeforeFit, before_fit, "Once, before anything else of a fit and before the optimizer is created."),
    (AfterCancelFit, after_cancel_fit, "After a fit cancelled with `Cancel::Fit`."),
    (AfterFit, after_fit, "Once, at the end of a fit."),
    (BeforeEpoch, before_epoch, "At the start of each epoch (a training phase followed by a validation phase)."),
    (AfterCancelEpoch, after_cancel_epoch, "After an epoch cancelled with `Cancel::Epoch`."),
    (AfterEpoch, after_epoch, "At the end of each epoch."),
    (BeforeTrain, before_train, "Before the training phase, with the model in training mode."),
    (AfterCancelTrain, after_cancel_train, "After a training phase cancelled with `Cancel::Train`."),
    (AfterTrain, after_train, "After the training phase."),
    (
        BeforeValidate,
        before_validate,
        "Before the validation phase, with the model in evaluation mode and gradients off."
    ),
    (AfterCancelValidate, after_cancel_validate, "After a validation phase cancelled with `Cancel::Valid`."),
    (AfterValidate, after_validate, "After the validation phase."),
    (BeforeBatch, before_batch, "Before each batch; `learn.batch` holds it and may be replaced."),
    (AfterPred, after_pred, "After the model computed `learn.preds`."),
    (AfterLoss, after_loss, "After the loss function computed `learn.loss`."),
    (BeforeBackward, before_backward, "Before `loss.backward()` (training only)."),
    (AfterBackward, after_backward, "After the gradients are computed (training only)."),
    (BeforeStep, before_step, "Before the optimizer step (training only): the place for gradient clipping."),
    (AfterStep, after_step, "After the optimizer step, before the gradients are zeroed (training only)."),
    (AfterCancelBatch, after_cancel_batch, "After a batch cancelled with `Cancel::Batch`."),
    (AfterBatch, after_batch, "After each batch."),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A typed cancellation, fastai's `Cancel*Exception`: a callback returns `Err(Cancel::X.into())` and
/// the phase of kind `X` stops, fires its `AfterCancel` event and then its `After` event, and the loop
/// goes on with what follows that phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cancel {
    /// Skips the rest of the current batch (no backward or step if raised before them).
    Batch,
    /// Ends the current training phase; validation still runs.
    Train,
    /// Ends the current validation phase.
    Valid,
    /// Ends the current epoch; the next epoch starts.
    Epoch,
    /// Ends the fit.
    Fit,
}
