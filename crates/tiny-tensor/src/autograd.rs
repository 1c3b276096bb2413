//! Reverse-mode automatic differentiation: the recorded graph, `backward`, and the `no_grad` guard.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use crate::{Result, Tensor, TensorError};

/// Computes the gradient of each input from the output's gradient `grad`, given the output itself and
/// the op's inputs; `None` where an input needs no gradient.
pub(crate) type BackwardFn = Box<dyn Fn(&Tensor, &Tensor, &[Tensor]) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

/// The record an op leaves on its output: its inputs and how to send a gradient back to them.
pub(crate) struct GradFn {
    pub(crate) name: &'static str,
    /// The op's inputs; an input whose values no backward reads is a released handle (`Tensor::released`).
    pub(crate) inputs: Vec<Tensor>,
    pub(crate) backward: BackwardFn,
    /// Whether `backward` reads the op's output (`exp`, `relu`): then the graph never releases it.
    pub(crate) reads_output: bool,
}

/// Which values an op's backward reads besides the output gradient (every backward may read shapes, devices
/// and `requires_grad`), so that the graph keeps only those: PyTorch's saved tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reads {
    /// No values: `add`, `affine`, views, pooling (which keeps its own indices), a convolution (which keeps its
    /// input and weights in its closure).
    Nothing,
    /// The op's own output: `relu`, `exp`, `sqrt`.
    Output,
    /// Every input: `mul`, `matmul`.
    Inputs,
    /// Inputs and output: the default of [`Tensor::record`](crate::Tensor).
    All,
}

impl Reads {
    pub(crate) fn inputs(self) -> bool {
        matches!(self, Reads::Inputs | Reads::All)
    }

    pub(crate) fn output(self) -> bool {
        matches!(self, Reads::Output | Reads::All)
    }
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread record the graph (true unless a `no_grad` guard is alive).
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(Cell::get)
}

/// A scope in which ops record no graph, like PyTorch's `with torch.no_grad()`: for evaluation and
/// optimizer updates. Recording resumes when the guard is dropped.
#[must_use = "gradients are disabled only while the guard is alive"]
#[derive(Debug)]
pub struct NoGradGuard {
    previous: bool,
}

/// Disables graph recording on this thread until the returned guard is dropped.
///
/// ```
/// let w = tiny_tensor::Tensor::ones(&[2]).set_requires_grad(true);
/// let y = {
///     let _guard = tiny_tensor::no_grad();
///     w.mul_scalar(3.0).unwrap()
/// };
/// assert!(!y.requires_grad());
/// ```
pub fn no_grad() -> NoGradGuard {
    NoGradGuard { previous: GRAD_ENABLED.with(|g| g.replace(false)) }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

impl Tensor {
    /// Back-propagates from this scalar: every leaf that requires grad and contributed to it gets the
    /// gradient added to its `grad()` (gradients accumulate across calls, as in PyTorch, until
    /// `zero_grad`). The graph is kept, so a second call adds the same gradients again.
    ///
    /// ```
    /// use tiny_tensor::Tensor;
    /// // y = x^2 + 5x, so dy/dx = 2x + 5 = 11 at x = 3.
    /// let x = Tensor::from_vec(vec![3.0], &[1]).unwrap().set_requires_grad(true);
    /// let y = x.mul(&x).unwrap().add(&x.mul_scalar(5.0).unwrap()).unwrap().sum_all().unwrap();
    /// y.backward().unwrap();
    /// assert_eq!(x.grad().unwrap().to_vec(), vec![11.0]);
    /// ```
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(TensorError::NotScalar { shape: self.shape().to_vec() });
        }
        if !self.requires_grad() {
            return Err(TensorError::NoGrad);
        }
        let _guard = no_grad();
        let seed = Tensor::ones(self.shape()).to_device(self.device())?;
        if self.is_leaf() {
            return self.accumulate_grad(seed);
        }
        let mut grads: HashMap<usize, Tensor> = HashMap::from([(self.id(), seed)]);
        for node in topological_order(self).iter().rev() {
            let Some(grad) = grads.remove(&node.id()) else { continue };
            let Some(grad_fn) = node.grad_fn() else { continue };
            let input_grads = (grad_fn.backward)(&grad, node, &grad_fn.inputs)?;
            for (input, g) in grad_fn.inputs.iter().zip(input_grads) {
                let Some(g) = g else { continue };
                if !input.requires_grad() {
                    continue;
                }
                if g.shape() != input.shape() {
                    return Err(TensorError::ShapeMismatch {
                        op: grad_fn.name,
                        lhs: g.shape().to_vec(),
                        rhs: input.shape().to_vec(),
                    });
                }
                if input.is_leaf() {
                    input.accumulate_grad(g)?;
                } else if let Some(acc) = grads.get_mut(&input.id()) {
                    *acc = acc.add(&g)?;
                } else {
                    grads.insert(input.id(), g);
                }
            }
        }
        Ok(())
    }
}

/// The non-leaf tensors that `root` depends on, each after all of its inputs (iterative DFS, so deep
/// graphs cannot overflow the stack).
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, children_done)) = stack.pop() {
        if children_done {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        let Some(grad_fn) = t.grad_fn() else { continue };
        stack.push((t.clone(), true));
        for input in &grad_fn.inputs {
            if input.grad_fn().is_some() && !visited.contains(&input.id()) {
                stack.push((input.clone(), false));
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use crate::{Tensor, backend};

    fn leaf(values: &[f32]) -> Tensor {
        Tensor::from_vec(values.to_vec(), &[values.len()]).unwrap().set_requires_grad(true)
    }

    #[test]
    fn an_intermediate_no_backward_reads_is_freed_when_the_forward_drops_it() {
        let x = leaf(&[-1.0, 0.5, 2.0]);
        // A batchnorm-then-ReLU pattern: `affine` reads nothing back, `relu` reads only its output.
        let z = x.affine(2.0, -1.0).unwrap();
        let y = z.relu().unwrap();
        let memory = z.memory();
        drop(z);
        assert!(memory.upgrade().is_none(), "the graph still holds the ReLU's input");
        assert!(y.graph_inputs()[0].is_released());
        // Gradients are unchanged, and the kept graph gives them again on a second backward.
        let loss = y.sum_all().unwrap();
        loss.backward().unwrap();
        assert_eq!(x.grad().unwrap().to_vec(), vec![0.0, 0.0, 2.0]);
        loss.backward().unwrap();
        assert_eq!(x.grad().unwrap().to_vec(), vec![0.0, 0.0, 4.0]);
    }

    #[test]
    fn what_a_backward_reads_is_kept() {
        let (x, w) = (leaf(&[1.0, 2.0]), leaf(&[3.0, 4.0]));
        // `mul` reads its inputs.
        let a = x.affine(1.0, 1.0).unwrap();
        let m = a.mul(&w).unwrap();
        let memory = a.memory();
        drop(a);
        assert!(memory.upgrade().is_some());
        // `exp` reads its output, so an op that reads nothing still keeps it.
        let e = x.exp().unwrap();
        let s = e.add(&m).unwrap();
        let memory = e.memory();
        drop(e);
        assert!(memory.upgrade().is_some());
        assert!(!s.graph_inputs()[0].is_released());
        s.sum_all().unwrap().backward().unwrap();
        let want: Vec<f32> = [1.0f32, 2.0].iter().zip([3.0, 4.0]).map(|(v, w)| v.exp() + w).collect();
        assert_eq!(x.grad().unwrap().to_vec(), want);
        assert_eq!(w.grad().unwrap().to_vec(), vec![2.0, 3.0]);
    }

    #[test]
    fn a_leaf_is_never_released_and_a_kernel_refuses_a_released_handle() {
        let x = leaf(&[1.0, -2.0]);
        let y = x.neg().unwrap().add(&x).unwrap();
        let inputs = y.graph_inputs();
        assert!(!inputs[1].is_released(), "a leaf is the user's tensor, and its gradient lives on it");
        let released = inputs[0].clone();
        assert!(released.is_released());
        assert_eq!((released.shape(), released.device()), (&[2usize][..], crate::Device::Cpu));
        // Every released handle points at the same empty storage, which is no tensor's memory.
        assert!(!released.shares_storage(&released));
        let err = backend::on(&released).err().expect("a released handle has no values to compute with");
        assert!(err.to_string().contains("released"), "{err}");
    }
}
