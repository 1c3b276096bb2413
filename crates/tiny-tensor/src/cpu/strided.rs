//! The one loop nest behind every strided CPU kernel: visit all elements of a shape through N layouts.

/// Calls `f(len, offsets, strides)` once per innermost run of elements, where run element `j` of
/// operand `k` sits at `offsets[k] + j * strides[k]`.
///
/// Dimensions are visited in the memory order of operand 0 (largest stride first), and neighbouring
/// dimensions that are contiguous for every operand are merged, so a contiguous tensor is one long run.
/// Size-1 dimensions are dropped; an empty shape visits nothing.
pub(crate) fn for_each_run<const N: usize>(
    shape: &[usize],
    strides: [&[usize]; N],
    offsets: [usize; N],
    mut f: impl FnMut(usize, [usize; N], [usize; N]),
) {
    if shape.contains(&0) {
        return;
    }
    let mut dims: Vec<usize> = (0..shape.len()).filter(|&d| shape[d] != 1).collect();
    dims.sort_by(|&a, &b| strides[0][b].cmp(&strides[0][a]));
    let mut sizes: Vec<usize> = Vec::with_capacity(dims.len());
    let mut steps: Vec<[usize; N]> = Vec::with_capacity(dims.len());
    for d in dims {
        let s: [usize; N] = std::array::from_fn(|k| strides[k][d]);
        if let (Some(n), Some(last)) = (sizes.last_mut(), steps.last_mut())
            && (0..N).all(|k| last[k] == s[k] * shape[d])
        {
            *n *= shape[d];
            *last = s;
            continue;
        }
        sizes.push(shape[d]);
        steps.push(s);
    }
    let Some(&inner_len) = sizes.last() else {
        f(1, offsets, [0; N]);
        return;
    };
    let inner = steps[steps.len() - 1];
    // The second-innermost dimension is a plain loop too, so the odometer below runs once per row of
    // runs: short runs (a broadcast RGB vector, say) would otherwise pay its bookkeeping every 3 elements.
    let (rows, row_step) =
        if sizes.len() >= 2 { (sizes[sizes.len() - 2], steps[steps.len() - 2]) } else { (1, [0; N]) };
    let outer = sizes.len().saturating_sub(2);
    let mut idx = vec![0usize; outer];
    let mut offs = offsets;
    loop {
        let mut row = offs;
        for _ in 0..rows {
            f(inner_len, row, inner);
            for k in 0..N {
                row[k] += row_step[k];
            }
        }
        let mut d = outer;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            for k in 0..N {
                offs[k] += steps[d][k];
            }
            if idx[d] < sizes[d] {
                break;
            }
            for k in 0..N {
                offs[k] -= steps[d][k] * sizes[d];
            }
            idx[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_is_one_run_and_transpose_is_many() {
        let mut runs = vec![];
        for_each_run(&[2, 3], [&[3, 1]], [0], |n, o, s| runs.push((n, o[0], s[0])));
        assert_eq!(runs, vec![(6, 0, 1)]);
        runs.clear();
        for_each_run(&[3, 2], [&[1, 3], &[2, 1]], [0, 0], |n, o, s| runs.push((n, o[0], s[0])));
        // Operand 0 (a transpose) is walked in its own memory order.
        assert_eq!(runs, vec![(3, 0, 1), (3, 3, 1)]);
    }
}
