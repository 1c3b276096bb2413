//! tiny-tensor: f32 tensors with reverse-mode automatic differentiation.
