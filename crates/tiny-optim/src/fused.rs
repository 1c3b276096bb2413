//! How the optimizers touch memory: their update as a program for tiny-tensor's fused `foreach_update_`.

use std::collections::HashMap;

use tiny_tensor::{Tensor, UpdateProgram, foreach_update_};

use crate::core::ParamState;

/// Runs one fused update per bucket of `items`, a bucket being the items of one key (say a device and a step
/// count), with the program that `program` writes for that key: usually a single call for a whole group.
///
/// Returns which items were updated and the first error. A failed call changes none of its items, and the
/// buckets after it are not run, so the caller can undo what it prepared for the items left as they were.
pub(crate) fn update_by_key<K: Copy + PartialEq>(
    items: &[(K, Vec<&Tensor>)],
    program: impl Fn(K) -> UpdateProgram,
) -> (Vec<bool>, tiny_tensor::Result<()>) {
    let mut done = vec![false; items.len()];
    let mut keys: Vec<K> = Vec::new();
    for (key, _) in items {
        if !keys.contains(key) {
            keys.push(*key);
        }
    }
    for key in keys {
        let bucket: Vec<usize> = (0..items.len()).filter(|&i| items[i].0 == key).collect();
        let tensors: Vec<&[&Tensor]> = bucket.iter().map(|&i| &items[i].1[..]).collect();
        if let Err(e) = foreach_update_(&tensors, &program(key)) {
            return (done, Err(e));
        }
        bucket.iter().for_each(|&i| done[i] = true);
    }
    (done, Ok(()))
}

/// After a group's fused step, per parameter `(id, first)` and whether it was updated: counts the step of each
/// updated parameter, and drops the new buffers of one that was not, so that its next step starts them afresh.
pub(crate) fn settle(
    state: &mut HashMap<usize, ParamState>,
    params: impl Iterator<Item = (usize, bool)>,
    done: &[bool],
) {
    for ((id, first), &done) in params.zip(done) {
        let st = state.entry(id).or_default();
        if done {
            st.step += 1;
        } else if first {
            st.buffers.clear();
        }
    }
}
