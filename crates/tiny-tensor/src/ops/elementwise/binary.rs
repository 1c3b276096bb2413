//! Broadcasting arithmetic (`add`, `sub`, `mul`, `div`, and `add_relu`), their scalar forms, and comparisons.

use super::{BinaryOp, UnaryOp, binary, unary};
use crate::autograd::Reads;
use crate::{Result, Tensor};

impl Tensor {
    /// `self + rhs`, broadcasting. d/da = 1, d/db = 1 (summed back over broadcast dimensions).
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = binary("add", self, rhs, BinaryOp::Add)?;
        Ok(Tensor::record_reading(out, "add", &[self, rhs], Reads::Nothing, |g, _, x| {
            Ok(vec![grad_if(&x[0], || g.sum_to(x[0].shape()))?, grad_if(&x[1], || g.sum_to(x[1].shape()))?])
        }))
    }

    /// `relu(self + rhs)`, broadcasting, as one op: `add` then `relu` to the bit, without the sum as a tensor of
    /// its own (a residual block's last step). The gradient is ReLU's, read from the output, then `add`'s.
    ///
    /// ```
    /// use tiny_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![1.0, -2.0], &[2]).unwrap();
    /// let b = Tensor::from_vec(vec![0.5, 1.0], &[2]).unwrap();
    /// assert_eq!(a.add_relu(&b).unwrap().to_vec(), [1.5, 0.0]);
    /// ```
    pub fn add_relu(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = binary("add_relu", self, rhs, BinaryOp::AddRelu)?;
        Ok(Tensor::record_reading(out, "add_relu", &[self, rhs], Reads::Output, |g, out, x| {
            let g = Tensor::relu_grad(g, out)?;
            Ok(vec![grad_if(&x[0], || g.sum_to(x[0].shape()))?, grad_if(&x[1], || g.sum_to(x[1].shape()))?])
        }))
    }

    /// `self - rhs`, broadcasting. d/da = 1, d/db = -1.
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = binary("sub", self, rhs, BinaryOp::Sub)?;
        Ok(Tensor::record_reading(out, "sub", &[self, rhs], Reads::Nothing, |g, _, x| {
            Ok(vec![grad_if(&x[0], || g.sum_to(x[0].shape()))?, grad_if(&x[1], || g.neg()?.sum_to(x[1].shape()))?])
        }))
    }

    /// `self * rhs` elementwise, broadcasting. d/da = b, d/db = a.
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = binary("mul", self, rhs, BinaryOp::Mul)?;
        Ok(Tensor::record_reading(out, "mul", &[self, rhs], Reads::Inputs, |g, _, x| {
            Ok(vec![
                grad_if(&x[0], || g.mul(&x[1])?.sum_to(x[0].shape()))?,
                grad_if(&x[1], || g.mul(&x[0])?.sum_to(x[1].shape()))?,
            ])
        }))
    }

    /// `self / rhs` elementwise, broadcasting. d/da = 1/b, d/db = -a/b^2 = -out/b.
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = binary("div", self, rhs, BinaryOp::Div)?;
        Ok(Tensor::record(out, "div", &[self, rhs], |g, out, x| {
            Ok(vec![
                grad_if(&x[0], || g.div(&x[1])?.sum_to(x[0].shape()))?,
                grad_if(&x[1], || g.mul(out)?.div(&x[1])?.neg()?.sum_to(x[1].shape()))?,
            ])
        }))
    }

    /// `self + value`. d/dx = 1.
    pub fn add_scalar(&self, value: f32) -> Result<Tensor> {
        self.affine(1.0, value)
    }

    /// `self * value`. d/dx = value.
    pub fn mul_scalar(&self, value: f32) -> Result<Tensor> {
        self.affine(value, 0.0)
    }

    /// `self * mul + add` in one pass. d/dx = mul.
    pub fn affine(&self, mul: f32, add: f32) -> Result<Tensor> {
        let out = unary(self, UnaryOp::Affine, [mul, add])?;
        Ok(Tensor::record_reading(out, "affine", &[self], Reads::Nothing, move |g, _, _| {
            Ok(vec![Some(g.mul_scalar(mul)?)])
        }))
    }

    /// 1.0 where `self == rhs`, else 0.0 (broadcasting; not differentiable).
    pub fn eq(&self, rhs: &Tensor) -> Result<Tensor> {
        binary("eq", self, rhs, BinaryOp::Eq)
    }

    /// 1.0 where `self > rhs`, else 0.0 (broadcasting; not differentiable).
    pub fn gt(&self, rhs: &Tensor) -> Result<Tensor> {
        binary("gt", self, rhs, BinaryOp::Gt)
    }

    /// `grad` where `out > 0`, else 0: the backward of `relu` in one pass, from its output `out` (positive
    /// exactly where the input is; NaN and zeros give 0 either way).
    pub(crate) fn relu_grad(grad: &Tensor, out: &Tensor) -> Result<Tensor> {
        binary("relu_backward", grad, out, BinaryOp::ReluGrad)
    }
}

/// Computes an input's gradient only when that input takes part in autograd.
pub(crate) fn grad_if(input: &Tensor, f: impl FnOnce() -> Result<Tensor>) -> Result<Option<Tensor>> {
    if input.requires_grad() { f().map(Some) } else { Ok(None) }
}
