//! `warp_perspective`: exact pixel moves (identity, quarter turns, flips), hand-computed padding, PyTorch's
//! `grid_sample` from `tests/fixtures/warp.safetensors`, and the errors for bad input; each on the CPU and,
//! where a GPU opens, on CUDA (`test_device!`).
//!
//! The exact comparisons hold on a GPU too: both devices compute the source point in f64 and snap it to a
//! pixel centre within 1e-6 pixels, so a pixel move reads one pixel with weight 1, and the half-pixel cases
//! mix two with weights 0.5, which no FMA or summation order can round.

mod common;

use common::{on, rng, test_device};
use tiny_tensor::{Device, Tensor, TensorError, WarpPad};

const IDENTITY: [f32; 9] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
const PADS: [WarpPad; 2] = [WarpPad::Reflection, WarpPad::Zeros];

/// An `[n, c, h, w]` tensor whose element `(b, k, i, j)` is `f(b, k, i, j)`.
fn image(shape: [usize; 4], f: impl Fn(usize, usize, usize, usize) -> f32) -> Tensor {
    let [n, c, h, w] = shape;
    let mut v = Vec::with_capacity(n * c * h * w);
    for b in 0..n {
        for k in 0..c {
            for i in 0..h {
                for j in 0..w {
                    v.push(f(b, k, i, j));
                }
            }
        }
    }
    Tensor::from_vec(v, &shape).unwrap()
}

/// A batch where every value differs, so that any misplaced pixel shows.
fn distinct(shape: [usize; 4]) -> Tensor {
    image(shape, |b, k, i, j| (((b * 7 + k) * 31 + i) * 37 + j) as f32 * 0.25 - 3.0)
}

/// The same values stored row-major and channels-last (tiny's normalised batches are the latter).
fn both_layouts(x: &Tensor) -> [Tensor; 2] {
    [x.clone(), x.to_channels_last().unwrap()]
}

/// The value of logical element `(b, k, i, j)` of an `[n, c, h, w]` tensor's row-major data.
fn at(data: &[f32], shape: &[usize], b: usize, k: usize, i: usize, j: usize) -> f32 {
    data[((b * shape[1] + k) * shape[2] + i) * shape[3] + j]
}

/// The warped values, after checking that the result stayed on the input's device.
fn warp(x: &Tensor, mats: &[[f32; 9]], pad: WarpPad) -> Vec<f32> {
    let y = x.warp_perspective(mats, pad).unwrap();
    assert_eq!(y.device(), x.device());
    y.to_vec()
}

fn the_identity_returns_the_input_exactly(device: Device) {
    let x = Tensor::uniform(&[2, 3, 5, 7], -2.0, 2.0, &mut rng(1)).unwrap();
    for input in both_layouts(&on(&x, device)) {
        for pad in PADS {
            let y = input.warp_perspective(&[IDENTITY; 2], pad).unwrap();
            assert_eq!(y.shape(), x.shape());
            assert_eq!(y.device(), device);
            assert_eq!(y.to_vec(), x.to_vec(), "{pad:?}");
        }
    }
    // A strided view (every other column) is read through its strides too.
    let wide = on(&Tensor::uniform(&[1, 2, 4, 10], -1.0, 1.0, &mut rng(2)).unwrap(), device);
    let view = wide.reshape(&[1, 2, 4, 5, 2]).unwrap().narrow(4, 1, 1).unwrap().squeeze(4).unwrap();
    assert_eq!(warp(&view, &[IDENTITY], WarpPad::Zeros), view.to_vec());
}
test_device!(
    the_identity_returns_the_input_exactly,
    the_identity_returns_the_input_exactly_cpu,
    the_identity_returns_the_input_exactly_cuda
);

fn a_quarter_turn_rotates_the_image_exactly(device: Device) {
    let shape = [2usize, 2, 4, 4];
    let x = distinct(shape);
    let xs = x.to_vec();
    let n = shape[3];
    // [[0, -1, 0], [1, 0, 0], [0, 0, 1]] reads (x, y) from (-y, x): out[i][j] = in[j][n - 1 - i], NumPy's rot90,
    // a counterclockwise quarter turn. Its transpose turns the other way: out[i][j] = in[n - 1 - j][i].
    let ccw = [0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    let cw = [0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    let want_ccw = image(shape, |b, k, i, j| at(&xs, &shape, b, k, j, n - 1 - i));
    let want_cw = image(shape, |b, k, i, j| at(&xs, &shape, b, k, n - 1 - j, i));
    let x = on(&x, device);
    for input in both_layouts(&x) {
        for pad in PADS {
            assert_eq!(warp(&input, &[ccw; 2], pad), want_ccw.to_vec(), "counterclockwise, {pad:?}");
            assert_eq!(warp(&input, &[cw; 2], pad), want_cw.to_vec(), "clockwise, {pad:?}");
        }
    }
    // Each image has its own matrix.
    let mixed = image(
        shape,
        |b, k, i, j| if b == 0 { at(&xs, &shape, b, k, j, n - 1 - i) } else { at(&xs, &shape, b, k, i, j) },
    );
    assert_eq!(warp(&x, &[ccw, IDENTITY], WarpPad::Zeros), mixed.to_vec());
}
test_device!(
    a_quarter_turn_rotates_the_image_exactly,
    a_quarter_turn_rotates_the_image_exactly_cpu,
    a_quarter_turn_rotates_the_image_exactly_cuda
);

fn a_horizontal_flip_mirrors_the_image_exactly(device: Device) {
    let shape = [1usize, 3, 3, 5];
    let x = distinct(shape);
    let xs = x.to_vec();
    let flip = [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let want = image(shape, |b, k, i, j| at(&xs, &shape, b, k, i, shape[3] - 1 - j));
    for input in both_layouts(&on(&x, device)) {
        for pad in PADS {
            assert_eq!(warp(&input, &[flip], pad), want.to_vec(), "{pad:?}");
        }
    }
}
test_device!(
    a_horizontal_flip_mirrors_the_image_exactly,
    a_horizontal_flip_mirrors_the_image_exactly_cpu,
    a_horizontal_flip_mirrors_the_image_exactly_cuda
);

/// One row `[1, 2, 3, 4]`: with h = 1 every point reads row 0, so only x moves.
fn row() -> Tensor {
    Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[1, 1, 1, 4]).unwrap()
}

/// A matrix that scales x by `zoom` and shifts it by `shift` (normalised units).
fn zoom_shift(zoom: f32, shift: f32) -> [f32; 9] {
    [zoom, 0.0, shift, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
}

fn points_outside_the_image_are_reflected_or_zero(device: Device) {
    // Output columns 0..4 sit at x = -1, -1/3, 1/3, 1; a pixel is (x + 1) * 1.5.
    let cases = [
        // Zoomed out twice: source pixels -1.5, 0.5, 2.5, 4.5; -1.5 reflects to 1.5 and 4.5 to 1.5.
        (zoom_shift(2.0, 0.0), [0.0, 1.5, 3.5, 0.0], [2.5, 1.5, 3.5, 2.5]),
        // Shifted by 1.5 pixels: 1.5, 2.5, 3.5, 4.5; 3.5 half reads pixel 3 in zeros mode, reflects to 2.5.
        (zoom_shift(1.0, 1.0), [2.5, 3.5, 2.0, 0.0], [2.5, 3.5, 3.5, 2.5]),
        // Shifted by one span (3 pixels): the mirror image, reflected once.
        (zoom_shift(1.0, 2.0), [4.0, 0.0, 0.0, 0.0], [4.0, 3.0, 2.0, 1.0]),
        // Shifted by two spans: reflected twice, the image itself.
        (zoom_shift(1.0, 4.0), [0.0; 4], [1.0, 2.0, 3.0, 4.0]),
        // Far to the left, reflected many times: pixels -301.5 + j, i.e. 1.5, 0.5, 0.5, 1.5 (span 3).
        (zoom_shift(1.0, -201.0), [0.0; 4], [2.5, 1.5, 1.5, 2.5]),
    ];
    for (m, zeros, reflection) in cases {
        assert_eq!(warp(&on(&row(), device), &[m], WarpPad::Zeros), zeros, "zeros, {m:?}");
        assert_eq!(warp(&on(&row(), device), &[m], WarpPad::Reflection), reflection, "reflection, {m:?}");
    }
    // Along y on a 3x3 image: shifting by half the height reads row i + 1; row 2 reads row 3, outside,
    // which reflects to row 1.
    let x = on(&Tensor::from_vec((1..=9).map(|v| v as f32).collect(), &[1, 1, 3, 3]).unwrap(), device);
    let down = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0];
    assert_eq!(warp(&x, &[down], WarpPad::Zeros), [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 0.0, 0.0, 0.0]);
    assert_eq!(warp(&x, &[down], WarpPad::Reflection), [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 4.0, 5.0, 6.0]);
}
test_device!(
    points_outside_the_image_are_reflected_or_zero,
    points_outside_the_image_are_reflected_or_zero_cpu,
    points_outside_the_image_are_reflected_or_zero_cuda
);

fn a_degenerate_third_coordinate_gives_zeros(device: Device) {
    let x = on(&distinct([1, 2, 3, 3]), device);
    let flat = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0];
    let nan = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, f32::NAN];
    let inf = [f32::INFINITY, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    for m in [flat, nan] {
        for pad in PADS {
            assert_eq!(warp(&x, &[m], pad), vec![0.0; 18], "{m:?}, {pad:?}");
        }
    }
    // An infinite source point is zero too (in the middle column, where x = 0, inf * 0 makes it NaN).
    assert!(warp(&x, &[inf], WarpPad::Reflection).iter().all(|&v| v == 0.0));
}
test_device!(
    a_degenerate_third_coordinate_gives_zeros,
    a_degenerate_third_coordinate_gives_zeros_cpu,
    a_degenerate_third_coordinate_gives_zeros_cuda
);

fn a_side_of_one_pixel_uses_the_centre(device: Device) {
    // With w = 1 (or h = 1) the normalised coordinate is 0 and every point maps back to pixel 0.
    let x = on(&Tensor::from_vec(vec![5.0, -2.0], &[1, 2, 1, 1]).unwrap(), device);
    let m = [3.0, 1.0, 0.5, -2.0, 0.25, 7.0, 0.0, 0.0, 1.0];
    for pad in PADS {
        assert_eq!(warp(&x, &[m], pad), [5.0, -2.0]);
    }
}
test_device!(
    a_side_of_one_pixel_uses_the_centre,
    a_side_of_one_pixel_uses_the_centre_cpu,
    a_side_of_one_pixel_uses_the_centre_cuda
);

fn empty_batches_give_empty_results(device: Device) {
    let x = on(&Tensor::zeros(&[0, 3, 4, 4]), device);
    assert_eq!(x.warp_perspective(&[], WarpPad::Reflection).unwrap().shape(), &[0, 3, 4, 4]);
    let x = on(&Tensor::zeros(&[2, 0, 4, 4]), device);
    let y = x.warp_perspective(&[IDENTITY; 2], WarpPad::Zeros).unwrap();
    assert_eq!((y.shape(), y.device()), (&[2, 0, 4, 4][..], device));
}
test_device!(
    empty_batches_give_empty_results,
    empty_batches_give_empty_results_cpu,
    empty_batches_give_empty_results_cuda
);

fn bad_input_is_an_error_naming_the_op(device: Device) {
    let invalid = |e: TensorError| match e {
        TensorError::InvalidArgument { op, msg } => {
            assert_eq!(op, "warp_perspective");
            msg
        }
        other => panic!("unexpected error {other:?}"),
    };
    let three_d = on(&Tensor::zeros(&[3, 4, 4]), device);
    let msg = invalid(three_d.warp_perspective(&[IDENTITY; 3], WarpPad::Zeros).unwrap_err());
    assert!(msg.contains("[3, 4, 4]"), "{msg}");
    let x = on(&Tensor::zeros(&[4, 3, 2, 2]), device);
    let msg = invalid(x.warp_perspective(&[IDENTITY; 3], WarpPad::Reflection).unwrap_err());
    assert!(msg.contains('3') && msg.contains('4'), "{msg}");
    // No gradient: an input that requires grad is refused while grad mode is on, and accepted under no_grad,
    // where the output records nothing.
    let leaf = common::leaf(&Tensor::zeros(&[1, 1, 2, 2]), device);
    let msg = invalid(leaf.warp_perspective(&[IDENTITY], WarpPad::Zeros).unwrap_err());
    assert!(msg.contains("not differentiable"), "{msg}");
    let _guard = tiny_tensor::no_grad();
    let y = leaf.warp_perspective(&[IDENTITY], WarpPad::Zeros).unwrap();
    assert!(!y.requires_grad() && y.op_name().is_none());
}
test_device!(
    bad_input_is_an_error_naming_the_op,
    bad_input_is_an_error_naming_the_op_cpu,
    bad_input_is_an_error_naming_the_op_cuda
);

fn matches_pytorch_grid_sample(device: Device) {
    assert_eq!(common::torch::replay_warp(device), 16);
}
test_device!(matches_pytorch_grid_sample, matches_pytorch_grid_sample_cpu, matches_pytorch_grid_sample_cuda);
