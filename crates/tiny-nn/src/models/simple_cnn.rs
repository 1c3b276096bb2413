//! The chapter's `simple_cnn`: four stride-2 `ConvLayer`s, `AdaptivePool` and a `Linear` head.

use crate::Result;
use crate::layers::{AdaptivePool, ConvLayer, Linear, Sequential};

/// The chapter's model: four stride-2 `ConvLayer`s (3 -> 16 -> 32 -> 64 -> 128), `AdaptivePool`, and
/// `Linear(128, n_out)`. With 10 classes it has 98,730 parameters in 10 tensors.
pub fn simple_cnn(n_out: usize) -> Result<Sequential> {
    Ok(Sequential::new(vec![
        Box::new(ConvLayer::new(3, 16, 2, true, true)?),  // 32x32 for 64x64 input
        Box::new(ConvLayer::new(16, 32, 2, true, true)?), // 16x16
        Box::new(ConvLayer::new(32, 64, 2, true, true)?), // 8x8
        Box::new(ConvLayer::new(64, 128, 2, true, true)?), // 4x4
        Box::new(AdaptivePool::new()),
        Box::new(Linear::new(128, n_out)?),
    ]))
}
