//! tiny-optim: optimizers such as SGD with momentum and Adam (filled in by the tiny-optim issue).
