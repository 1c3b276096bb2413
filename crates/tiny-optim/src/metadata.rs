//! `OptimizerState` to and from string metadata, the form a safetensors header stores beside tensors.

use std::collections::HashMap;
use std::str::FromStr;

use tiny_tensor::Tensor;

use crate::{GroupState, OptimError, OptimizerState, Result};

/// The prefix of every metadata key, so that optimizer entries sit beside a model's without clashing.
const PREFIX: &str = "optim.";

impl OptimizerState {
    /// The numbers of this state (everything but `tensors`) as `(key, value)` strings, with keys such
    /// as `optim.kind`, `optim.step`, `optim.0.lr` and `optim.0.param_shapes`. Floats are written in
    /// Rust's shortest round-trip form, so `from_metadata` restores them bit for bit.
    ///
    /// ```
    /// use tiny_nn::Parameter;
    /// use tiny_optim::{Optimizer, OptimizerState, Sgd};
    /// use tiny_tensor::Tensor;
    /// let opt = Sgd::new(vec![Parameter::new(Tensor::zeros(&[2, 3]))], 0.1).momentum(0.9);
    /// let state = opt.state_dict().unwrap();
    /// let meta = state.to_metadata();
    /// assert!(meta.contains(&("optim.0.param_shapes".to_string(), "[2,3]".to_string())));
    /// let back = OptimizerState::from_metadata(&meta, state.tensors.clone()).unwrap();
    /// assert_eq!(back.groups, state.groups);
    /// ```
    pub fn to_metadata(&self) -> Vec<(String, String)> {
        let mut out = vec![
            (format!("{PREFIX}kind"), self.kind.clone()),
            (format!("{PREFIX}step"), self.step.to_string()),
            (format!("{PREFIX}groups"), self.groups.len().to_string()),
        ];
        for (g, gs) in self.groups.iter().enumerate() {
            let mut put = |name: &str, value: String| out.push((format!("{PREFIX}{g}.{name}"), value));
            put("lr", gs.lr.to_string());
            put("momentum", gs.momentum.to_string());
            put("weight_decay", gs.weight_decay.to_string());
            put("dampening", gs.dampening.to_string());
            put("nesterov", gs.nesterov.to_string());
            put("beta2", gs.beta2.to_string());
            put("eps", gs.eps.to_string());
            let shapes: Vec<String> = gs.param_shapes.iter().map(|s| format!("[{}]", join(s))).collect();
            put("param_shapes", shapes.join(";"));
            put("param_steps", join(&gs.param_steps));
        }
        out
    }

    /// Rebuilds a state from `to_metadata`'s strings (other keys are ignored) and the state tensors.
    /// A missing key or a value that does not parse is a `StateMismatch` naming the key.
    pub fn from_metadata(metadata: &[(String, String)], tensors: Vec<(String, Tensor)>) -> Result<Self> {
        let map: HashMap<&str, &str> = metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let get = |key: &str| -> Result<&str> {
            map.get(format!("{PREFIX}{key}").as_str()).copied().ok_or_else(|| bad(key, "is missing"))
        };
        let groups_len: usize = parse(get("groups")?, "groups")?;
        let mut groups = Vec::with_capacity(groups_len.min(1024));
        for g in 0..groups_len {
            let field = |name: &str| format!("{g}.{name}");
            let num = |name: &str| -> Result<f32> { parse(get(&field(name))?, &field(name)) };
            let key = field("param_shapes");
            let shapes = get(&key)?;
            let param_shapes = if shapes.is_empty() {
                Vec::new()
            } else {
                let shape = |s: &str| -> Result<Vec<usize>> {
                    let inner = s.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
                    split(inner.ok_or_else(|| bad(&key, "has a shape without brackets"))?, &key)
                };
                shapes.split(';').map(shape).collect::<Result<_>>()?
            };
            let key = field("param_steps");
            groups.push(GroupState {
                lr: num("lr")?,
                momentum: num("momentum")?,
                weight_decay: num("weight_decay")?,
                dampening: num("dampening")?,
                nesterov: parse(get(&field("nesterov"))?, &field("nesterov"))?,
                beta2: num("beta2")?,
                eps: num("eps")?,
                param_shapes,
                param_steps: split(get(&key)?, &key)?,
            });
        }
        Ok(OptimizerState { kind: get("kind")?.to_string(), step: parse(get("step")?, "step")?, groups, tensors })
    }
}

fn join<T: ToString>(values: &[T]) -> String {
    values.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

/// Parses a comma-separated list; the empty string is the empty list.
fn split<T: FromStr>(s: &str, key: &str) -> Result<Vec<T>> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',').map(|v| parse(v, key)).collect()
}

fn parse<T: FromStr>(value: &str, key: &str) -> Result<T> {
    value.trim().parse().map_err(|_| bad(key, &format!("has the unreadable value {value:?}")))
}

fn bad(key: &str, what: &str) -> OptimError {
    OptimError::StateMismatch { msg: format!("metadata key {PREFIX}{key} {what}") }
}
