//! tiny-nn: Parameter, Module and the chapter's layers (filled in by the tiny-nn issue).
