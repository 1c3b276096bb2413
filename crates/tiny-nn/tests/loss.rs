//! Label-smoothed cross entropy: eps 0 is the chapter's loss, the closed-form gradient `(softmax - q) / n`, a
//! finite-difference check, and errors for an eps outside `[0, 1]`.

use tiny_nn::{
    LabelSmoothingCrossEntropy, NnError, cross_entropy, cross_entropy_items, cross_entropy_smooth,
    cross_entropy_smooth_items,
};
use tiny_tensor::gradcheck::{Tolerance, check_elements};
use tiny_tensor::{Tensor, TensorError};

fn logits(seed: u64) -> Tensor {
    use rand::SeedableRng;
    Tensor::uniform(&[5, 4], -3.0, 3.0, &mut rand::rngs::StdRng::seed_from_u64(seed)).unwrap()
}

const Y: [u32; 5] = [0, 3, 1, 1, 2];

/// The shape of tiny-learner's `LossFn`, which tiny-nn cannot name.
type LossFn = Box<dyn Fn(&Tensor, &[u32]) -> tiny_nn::Result<Tensor>>;

#[test]
fn eps_zero_is_the_chapters_cross_entropy_bit_for_bit() {
    let x = logits(1).set_requires_grad(true);
    let grad = |loss: Tensor| {
        x.zero_grad();
        loss.backward().unwrap();
        x.grad().unwrap().to_vec()
    };
    let (plain, smooth) = (cross_entropy(&x, &Y).unwrap(), cross_entropy_smooth(&x, &Y, 0.0).unwrap());
    assert_eq!(plain.to_vec(), smooth.to_vec());
    assert_eq!(grad(plain), grad(smooth));
    assert_eq!(
        cross_entropy_items(&x, &Y).unwrap().to_vec(),
        cross_entropy_smooth_items(&x, &Y, 0.0).unwrap().to_vec()
    );
}

#[test]
fn the_gradient_is_softmax_minus_the_smoothed_target_over_n() {
    let (eps, n, c) = (0.1f32, Y.len(), 4usize);
    let x = logits(2).set_requires_grad(true);
    cross_entropy_smooth(&x, &Y, eps).unwrap().backward().unwrap();
    let g = x.grad().unwrap().to_vec();
    let xs = x.to_vec();
    for (i, row) in xs.chunks_exact(c).enumerate() {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z: f32 = row.iter().map(|v| (v - m).exp()).sum();
        for (j, v) in row.iter().enumerate() {
            let q = eps / c as f32 + if j == Y[i] as usize { 1.0 - eps } else { 0.0 };
            let want = ((v - m).exp() / z - q) / n as f32;
            assert!((g[i * c + j] - want).abs() < 1e-6, "dx[{i}, {j}] = {} vs {want}", g[i * c + j]);
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    let x = logits(3).set_requires_grad(true);
    for eps in [0.0, 0.1, 0.6, 1.0] {
        // gradcheck takes tiny-tensor's errors: tiny-nn's own become an InvalidArgument.
        let f = |t: &[Tensor]| {
            cross_entropy_smooth(&t[0], &Y, eps).map_err(|e| match e {
                NnError::Tensor(e) => e,
                other => TensorError::InvalidArgument { op: "cross_entropy_smooth", msg: other.to_string() },
            })
        };
        check_elements(std::slice::from_ref(&x), f, Tolerance::default()).unwrap();
    }
}

#[test]
fn the_loss_struct_is_fastais_and_usable_as_a_loss_func() {
    let x = logits(4);
    assert_eq!(LabelSmoothingCrossEntropy::default().eps(), 0.1);
    let loss = LabelSmoothingCrossEntropy::new(0.1).unwrap();
    let want = cross_entropy_smooth(&x, &Y, 0.1).unwrap().to_vec();
    assert_eq!(loss.loss(&x, &Y).unwrap().to_vec(), want);
    let boxed: LossFn = Box::new(loss.loss_func());
    assert_eq!(boxed(&x, &Y).unwrap().to_vec(), want);
    let items = loss.items_func()(&x, &Y).unwrap();
    assert_eq!(items.shape(), &[5]);
    assert_eq!(items.to_vec(), cross_entropy_smooth_items(&x, &Y, 0.1).unwrap().to_vec());
}

#[test]
fn eps_outside_zero_to_one_is_an_error_not_a_panic() {
    let x = logits(5);
    for eps in [-0.01, 1.01, f32::NAN, f32::INFINITY] {
        let err = cross_entropy_smooth(&x, &Y, eps).unwrap_err();
        assert!(matches!(err, NnError::InvalidArgument { layer: "cross_entropy_smooth", .. }), "{err}");
        let err = LabelSmoothingCrossEntropy::new(eps).unwrap_err();
        assert!(matches!(err, NnError::InvalidArgument { layer: "LabelSmoothingCrossEntropy", .. }), "{err}");
    }
    assert_eq!(
        LabelSmoothingCrossEntropy::new(2.0).unwrap_err().to_string(),
        "LabelSmoothingCrossEntropy: label smoothing eps must lie in [0, 1], got 2"
    );
    // A bad target is the fused op's error, passed through.
    assert!(matches!(cross_entropy_smooth(&x, &[0, 1, 2, 3, 4], 0.1), Err(NnError::Tensor(_))));
    assert!(cross_entropy_smooth(&x, &[0, 1], 0.1).is_err());
}
