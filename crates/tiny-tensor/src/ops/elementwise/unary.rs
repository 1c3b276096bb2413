//! Elementwise functions: `neg`, `exp`, `log`, `relu`, `sqrt`, `powf`, `round_bf16`.

use super::{UnaryOp, unary};
use crate::autograd::Reads;
use crate::{Result, Tensor};

impl Tensor {
    /// `-x`. d/dx = -1.
    pub fn neg(&self) -> Result<Tensor> {
        let out = unary(self, UnaryOp::Neg, [0.0; 2])?;
        Ok(Tensor::record_reading(out, "neg", &[self], Reads::Nothing, |g, _, _| Ok(vec![Some(g.neg()?)])))
    }

    /// `e^x`. d/dx = e^x, the output itself.
    pub fn exp(&self) -> Result<Tensor> {
        let out = unary(self, UnaryOp::Exp, [0.0; 2])?;
        Ok(Tensor::record_reading(out, "exp", &[self], Reads::Output, |g, out, _| Ok(vec![Some(g.mul(out)?)])))
    }

    /// The natural logarithm. d/dx = 1/x.
    pub fn log(&self) -> Result<Tensor> {
        let out = unary(self, UnaryOp::Log, [0.0; 2])?;
        Ok(Tensor::record_reading(out, "log", &[self], Reads::Inputs, |g, _, x| Ok(vec![Some(g.div(&x[0])?)])))
    }

    /// `max(x, 0)`. d/dx = `1[x > 0]`, read from the output (`relu(x) > 0` exactly where `x > 0`), so that
    /// the graph need not keep the input.
    pub fn relu(&self) -> Result<Tensor> {
        let out = unary(self, UnaryOp::Relu, [0.0; 2])?;
        Ok(Tensor::record_reading(out, "relu", &[self], Reads::Output, |g, out, _| {
            Ok(vec![Some(Tensor::relu_grad(g, out)?)])
        }))
    }

    /// The square root. d/dx = 1 / (2 sqrt(x)).
    pub fn sqrt(&self) -> Result<Tensor> {
        let out = unary(self, UnaryOp::Sqrt, [0.0; 2])?;
        Ok(Tensor::record_reading(out, "sqrt", &[self], Reads::Output, |g, out, _| {
            Ok(vec![Some(g.div(&out.mul_scalar(2.0)?)?)])
        }))
    }

    /// Each value rounded to the nearest bf16 (ties to even) and kept as an f32, like PyTorch's
    /// `x.to(torch.bfloat16).float()`, except that a denormal becomes the zero of its sign, as the x86 conversion
    /// instruction makes it (PyTorch's `.to` keeps it). d/dx = 1: the gradient passes straight through, in f32
    /// (PyTorch's round trip would round it to bf16 on the way back).
    ///
    /// ```
    /// let x = tiny_tensor::Tensor::from_vec(vec![1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0], &[2]).unwrap();
    /// assert_eq!(x.round_bf16().unwrap().to_vec(), vec![1.0, 1.0 + 4.0 / 256.0]);
    /// ```
    pub fn round_bf16(&self) -> Result<Tensor> {
        let out = unary(self, UnaryOp::RoundBf16, [0.0; 2])?;
        Ok(Tensor::record_reading(out, "round_bf16", &[self], Reads::Nothing, |g, _, _| Ok(vec![Some(g.clone())])))
    }

    /// `x^p` for a constant exponent. d/dx = p x^(p-1).
    pub fn powf(&self, p: f32) -> Result<Tensor> {
        let (op, params) = UnaryOp::pow(p);
        let out = unary(self, op, params)?;
        Ok(Tensor::record_reading(out, "powf", &[self], Reads::Inputs, move |g, _, x| {
            let slope = if p == 2.0 { x[0].mul_scalar(2.0)? } else { x[0].powf(p - 1.0)?.mul_scalar(p)? };
            Ok(vec![Some(g.mul(&slope)?)])
        }))
    }
}
