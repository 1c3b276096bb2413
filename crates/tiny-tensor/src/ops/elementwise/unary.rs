//! Elementwise functions: `neg`, `exp`, `log`, `relu`, `sqrt`, `powf`.

use super::{UnaryOp, unary};
use crate::{Result, Tensor};

impl Tensor {
    /// `-x`. d/dx = -1.
    pub fn neg(&self) -> Result<Tensor> {
        let out = unary(self, UnaryOp::Neg, [0.0; 2])?;
        Ok(Tensor::record(out, "neg", &[self], |g, _, _| Ok(vec![Some(g.neg()?)])))
    }

    /// `e^x`. d/dx = e^x, the output itself.
    pub fn exp(&self) -> Result<Tensor> {
        let out = unary(self, UnaryOp::Exp, [0.0; 2])?;
        Ok(Tensor::record(out, "exp", &[self], |g, out, _| Ok(vec![Some(g.mul(out)?)])))
    }

    /// The natural logarithm. d/dx = 1/x.
    pub fn log(&self) -> Result<Tensor> {
        let out = unary(self, UnaryOp::Log, [0.0; 2])?;
        Ok(Tensor::record(out, "log", &[self], |g, _, x| Ok(vec![Some(g.div(&x[0])?)])))
    }

    /// `max(x, 0)`. d/dx = 1[x > 0].
    pub fn relu(&self) -> Result<Tensor> {
        let out = unary(self, UnaryOp::Relu, [0.0; 2])?;
        Ok(Tensor::record(out, "relu", &[self], |g, _, x| Ok(vec![Some(Tensor::relu_grad(g, &x[0])?)])))
    }

    /// The square root. d/dx = 1 / (2 sqrt(x)).
    pub fn sqrt(&self) -> Result<Tensor> {
        let out = unary(self, UnaryOp::Sqrt, [0.0; 2])?;
        Ok(Tensor::record(out, "sqrt", &[self], |g, out, _| Ok(vec![Some(g.div(&out.mul_scalar(2.0)?)?)])))
    }

    /// `x^p` for a constant exponent. d/dx = p x^(p-1).
    pub fn powf(&self, p: f32) -> Result<Tensor> {
        let (op, params) = UnaryOp::pow(p);
        let out = unary(self, op, params)?;
        Ok(Tensor::record(out, "powf", &[self], move |g, _, x| {
            let slope = if p == 2.0 { x[0].mul_scalar(2.0)? } else { x[0].powf(p - 1.0)?.mul_scalar(p)? };
            Ok(vec![Some(g.mul(&slope)?)])
        }))
    }
}
