//! The part that every optimizer shares: groups, per-parameter state keyed by parameter, save and load.

use std::collections::{HashMap, HashSet};

use tiny_nn::Parameter;
use tiny_tensor::Tensor;

use crate::group::check_groups;
use crate::{GroupState, OptimError, OptimizerState, ParamGroup, Result};

/// The state of one parameter: how many updates it has had and its buffers, either none (no update
/// yet) or one per name in the optimizer's list (`["momentum_buffer"]`, `["exp_avg", "exp_avg_sq"]`).
#[derive(Debug, Clone, Default)]
pub(crate) struct ParamState {
    pub(crate) step: u64,
    pub(crate) buffers: Vec<Tensor>,
}

/// Parameter groups plus per-parameter state keyed by the parameter's tensor id, so that the state
/// follows the parameter, as PyTorch keys it by the parameter object.
#[derive(Debug, Clone)]
pub(crate) struct Core {
    pub(crate) groups: Vec<ParamGroup>,
    pub(crate) state: HashMap<usize, ParamState>,
    pub(crate) steps: u64,
    kind: &'static str,
    names: &'static [&'static str],
}

impl Core {
    /// An optimizer core of `kind` whose parameters carry the buffers `names`.
    pub(crate) fn new(groups: Vec<ParamGroup>, kind: &'static str, names: &'static [&'static str]) -> Result<Self> {
        check_groups(&groups)?;
        Ok(Core { groups, state: HashMap::new(), steps: 0, kind, names })
    }

    /// A core with one group; duplicates are caught by the next `step`.
    pub(crate) fn single(group: ParamGroup, kind: &'static str, names: &'static [&'static str]) -> Self {
        Core { groups: vec![group], state: HashMap::new(), steps: 0, kind, names }
    }

    /// Appends a group of `params` with learning rate `lr` and the last group's other hyper-parameters.
    pub(crate) fn add_group(&mut self, params: Vec<Parameter>, lr: f32) {
        let group = match self.groups.last() {
            Some(last) => last.sibling(params, lr),
            None => ParamGroup::new(params, lr),
        };
        self.groups.push(group);
    }

    /// Cuts the one group into consecutive groups of `sizes` parameters with its hyper-parameters.
    pub(crate) fn split_groups(&mut self, sizes: &[usize]) -> Result<()> {
        let bad = |msg: String| OptimError::BadSplit { msg };
        let [group] = self.groups.as_slice() else {
            return Err(bad(format!("it has {} groups already, not one", self.groups.len())));
        };
        let total: usize = sizes.iter().sum();
        if total != group.params.len() || sizes.is_empty() {
            return Err(bad(format!("sizes {sizes:?} add up to {total}, the group has {}", group.params.len())));
        }
        let group = self.groups.remove(0);
        let mut rest = group.params.clone().into_iter();
        for &n in sizes {
            self.groups.push(group.sibling(rest.by_ref().take(n).collect(), group.lr));
        }
        Ok(())
    }

    /// Applies `f` to every group, for the optimizers' builder methods.
    pub(crate) fn set_all(&mut self, f: impl Fn(&mut ParamGroup)) {
        self.groups.iter_mut().for_each(f);
    }

    /// A snapshot with copied tensors.
    pub(crate) fn state_dict(&self) -> Result<OptimizerState> {
        let mut groups = Vec::with_capacity(self.groups.len());
        let mut tensors = Vec::new();
        for (g, group) in self.groups.iter().enumerate() {
            let mut steps = Vec::with_capacity(group.params.len());
            for (i, p) in group.params.iter().enumerate() {
                let st = self.state.get(&p.id());
                steps.push(st.map_or(0, |s| s.step));
                for (name, buf) in self.names.iter().zip(st.map_or(&[][..], |s| &s.buffers)) {
                    tensors.push((format!("{g}.{i}.{name}"), copy_like(buf, buf)?));
                }
            }
            groups.push(GroupState::of(group, steps));
        }
        Ok(OptimizerState { kind: self.kind.to_string(), step: self.steps, groups, tensors })
    }

    /// Checks `saved` against the current groups completely, then replaces hyper-parameters and state.
    pub(crate) fn load_state_dict(&mut self, saved: &OptimizerState) -> Result<()> {
        let mismatch = |msg: String| OptimError::StateMismatch { msg };
        if saved.kind != self.kind {
            return Err(mismatch(format!("saved by {}, loaded into {}", saved.kind, self.kind)));
        }
        if saved.groups.len() != self.groups.len() {
            let (s, n) = (saved.groups.len(), self.groups.len());
            return Err(mismatch(format!("number of groups: saved {s}, the optimizer has {n}")));
        }
        let mut by_name: HashMap<&str, &Tensor> = HashMap::new();
        for (name, t) in &saved.tensors {
            if by_name.insert(name, t).is_some() {
                return Err(mismatch(format!("entry {name} appears twice")));
            }
        }
        let mut used = HashSet::new();
        let mut state = HashMap::new();
        for (g, (group, gs)) in self.groups.iter().zip(&saved.groups).enumerate() {
            let n = group.params.len();
            if gs.param_shapes.len() != n || gs.param_steps.len() != n {
                let s = gs.param_shapes.len();
                return Err(mismatch(format!("group {g}: saved {s} parameters, the group has {n}")));
            }
            for (i, p) in group.params.iter().enumerate() {
                if gs.param_shapes[i] != p.shape() {
                    let (s, h) = (&gs.param_shapes[i], p.shape());
                    return Err(mismatch(format!("parameter {g}.{i}: saved shape {s:?}, the parameter has {h:?}")));
                }
                let mut buffers = Vec::new();
                for name in self.names {
                    let key = format!("{g}.{i}.{name}");
                    let Some(t) = by_name.get(key.as_str()) else { continue };
                    if t.shape() != p.shape() {
                        let (s, h) = (t.shape(), p.shape());
                        return Err(mismatch(format!("entry {key}: saved shape {s:?}, the parameter has {h:?}")));
                    }
                    buffers.push(copy_like(t, p)?);
                    used.insert(key);
                }
                if !buffers.is_empty() && buffers.len() != self.names.len() {
                    let names = self.names.join(", ");
                    return Err(mismatch(format!("parameter {g}.{i}: needs all of {names} or none")));
                }
                let step = gs.param_steps[i];
                if step > 0 || !buffers.is_empty() {
                    state.insert(p.id(), ParamState { step, buffers });
                }
            }
        }
        if let Some((name, _)) = saved.tensors.iter().find(|(name, _)| !used.contains(name)) {
            return Err(mismatch(format!("entry {name} does not belong to any parameter of {}", self.kind)));
        }
        for (group, gs) in self.groups.iter_mut().zip(&saved.groups) {
            gs.apply_to(group);
        }
        self.state = state;
        self.steps = saved.step;
        Ok(())
    }
}

/// A fresh, contiguous copy of `src` on the device of `like`, sharing no memory with either.
pub(crate) fn copy_like(src: &Tensor, like: &Tensor) -> Result<Tensor> {
    let _guard = tiny_tensor::no_grad();
    let out = like.zeros_like()?;
    out.assign(&src.to_device(like.device())?)?;
    Ok(out)
}
