#!/usr/bin/env python3
"""Writes the PyTorch fixtures that tiny's tests compare against, in tinygrad's manner: the same expression
run in torch, its values and gradients saved, and replayed in Rust with no Python.

    python -m venv /tmp/fixtures && /tmp/fixtures/bin/pip install -r parity/requirements.txt
    /tmp/fixtures/bin/python parity/make_fixtures.py

Writes, each a safetensors file whose `cases` metadata (JSON) describes every case:
  crates/tiny-tensor/tests/fixtures/ops.safetensors      every differentiable op: values and input gradients
  crates/tiny-nn/tests/fixtures/nn.safetensors           losses, batchnorm modules, simple_cnn and resnet18
  crates/tiny-optim/tests/fixtures/optim.safetensors     SGD (momentum, dampening, Nesterov, weight decay),
                                                         Adam and AdamW, five steps each
  crates/tiny-data/tests/fixtures/pil_64.safetensors     PIL's 64x64 input for the images in fixtures/pil/
  crates/tiny-tensor/tests/fixtures/label_smoothing.safetensors   the fused cross entropy with label smoothing,
  crates/tiny-nn/tests/fixtures/label_smoothing.safetensors       per item and as the mean (the loss)
  crates/tiny-tensor/tests/fixtures/warp.safetensors     warp_perspective: F.grid_sample (bilinear,
                                                         align_corners=True, reflection and zeros padding)
  crates/tiny-tensor/tests/fixtures/autocast_bf16.safetensors  conv2d and matmul under
                                                         torch.autocast("cpu", dtype=torch.bfloat16)
  crates/tiny-nn/tests/fixtures/autocast_bf16.safetensors      simple_cnn's and resnet18's logits and first-step
                                                         gradients under the same autocast
  crates/tiny-nn/tests/fixtures/zoo.safetensors          resnet34's and resnet50's state_dict names and shapes and
                                                         eval logits from hashed weights; Dropout's mask semantics
  crates/tiny-tensor/tests/fixtures/bce.safetensors      F.binary_cross_entropy_with_logits per element (the
  crates/tiny-nn/tests/fixtures/bce.safetensors          fused op) and as the mean (fastai's BCEWithLogitsLossFlat)
(`make_fixtures.py ops nn optim inputs label_smoothing warp autocast autocast_models zoo multi_label` writes only the
parts named.)

A case's tensors are named `<case>.in<i>` (inputs, contiguous), `<case>.out<j>` (outputs), `<case>.cot`
(the cotangent: the gradient of `sum(out0 * cot)` is taken) and `<case>.grad<i>` (that gradient for each
input that has one). An input's `view` list (permute, transpose, narrow, expand, channels_last, t) is applied
on both sides before the op, so strided inputs are tested and gradients are with respect to the stored
base tensor. Everything is float32 on the CPU, seeded, and deterministic.
"""
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)


# ----------------------------------------------------------------------------- case recording
class Writer:
    def __init__(self):
        self.tensors, self.cases = {}, []

    def put(self, name, t):
        assert name not in self.tensors, name
        self.tensors[name] = t.detach().to(torch.float32).contiguous().clone()

    def save(self, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"cases": json.dumps(self.cases), "torch": torch.__version__,
                "generator": "parity/make_fixtures.py"}
        save_file(self.tensors, str(path), metadata=meta)
        size = path.stat().st_size
        print(f"{path.relative_to(ROOT)}: {len(self.cases)} cases, {len(self.tensors)} tensors, {size / 1e3:.0f} kB")


def apply_view(x, view):
    for v in view:
        kind = v[0]
        if kind == "permute":
            x = x.permute(*v[1])
        elif kind == "transpose":
            x = x.transpose(v[1], v[2])
        elif kind == "t":
            x = x.t()
        elif kind == "narrow":
            x = x.narrow(v[1], v[2], v[3])
        elif kind == "expand":
            x = x.expand(*v[1])
        elif kind == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            raise ValueError(kind)
    return x


def case(w, name, op, fn, inputs, params=None, views=None, grads=None, rtol=1e-5, note=None):
    """Runs `fn(*viewed inputs)` (a tensor or a tuple, the first output differentiated) and records it."""
    views = views or [[] for _ in inputs]
    grads = grads if grads is not None else [True] * len(inputs)
    leaves = [x.detach().clone().requires_grad_(g) for x, g in zip(inputs, grads)]
    outs = fn(*[apply_view(x, v) for x, v in zip(leaves, views)])
    outs = outs if isinstance(outs, tuple) else (outs,)
    for i, x in enumerate(leaves):
        w.put(f"{name}.in{i}", x)
    for j, o in enumerate(outs):
        w.put(f"{name}.out{j}", o)
    if any(grads):
        g = torch.Generator().manual_seed(len(w.cases) + 1000)
        cot = torch.randn(outs[0].shape, generator=g)
        w.put(f"{name}.cot", cot)
        gs = torch.autograd.grad((outs[0] * cot).sum(), [x for x in leaves if x.requires_grad], allow_unused=True)
        it = iter(gs)
        for i, x in enumerate(leaves):
            if x.requires_grad:
                gi = next(it)
                w.put(f"{name}.grad{i}", gi if gi is not None else torch.zeros_like(x))
    w.cases.append(dict(name=name, op=op, params=params or {}, views=views, grads=grads, outputs=len(outs),
                        rtol=rtol, note=note))


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def positive(*shape, seed):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) + 0.5


# ----------------------------------------------------------------------------- tiny-tensor: ops
def ops():
    w = Writer()
    s = iter(range(1, 10_000))
    # Elementwise, unary. Inputs stay away from the kinks and poles (relu at 0, log and sqrt at 0).
    case(w, "neg", "neg", torch.neg, [randn(3, 4, seed=next(s))])
    case(w, "exp", "exp", torch.exp, [randn(3, 4, seed=next(s))])
    case(w, "log", "log", torch.log, [positive(3, 4, seed=next(s))])
    case(w, "sqrt", "sqrt", torch.sqrt, [positive(3, 4, seed=next(s))])
    case(w, "relu", "relu", F.relu, [randn(5, 6, seed=next(s))])
    for p in (2.0, 0.5, -1.5, 3.0):
        case(w, f"powf_{p}", "powf", lambda x, p=p: x.pow(p), [positive(4, 3, seed=next(s))], params=dict(p=p))
    case(w, "relu_permuted", "relu", F.relu, [randn(2, 3, 4, seed=next(s))], views=[[["permute", [2, 0, 1]]]])
    # Elementwise, binary, with broadcasting and strided views.
    for op, fn in (("add", torch.add), ("sub", torch.sub), ("mul", torch.mul), ("div", torch.div)):
        b = positive if op == "div" else randn
        case(w, f"{op}_same", op, fn, [randn(3, 4, seed=next(s)), b(3, 4, seed=next(s))])
        case(w, f"{op}_broadcast_row", op, fn, [randn(3, 4, seed=next(s)), b(4, seed=next(s))])
        case(w, f"{op}_broadcast_both", op, fn, [randn(2, 1, 5, seed=next(s)), b(3, 1, seed=next(s))])
        case(w, f"{op}_transposed", op, fn, [randn(4, 3, seed=next(s)), b(3, 4, seed=next(s))],
             views=[[["t"]], []])
        case(w, f"{op}_narrowed_expanded", op, fn, [randn(5, 6, seed=next(s)), b(1, 4, seed=next(s))],
             views=[[["narrow", 1, 1, 4], ["narrow", 0, 2, 3]], [["expand", [3, 4]]]])
    case(w, "add_channels_last", "add", torch.add, [randn(2, 3, 4, 5, seed=next(s)), randn(3, 1, 1, seed=next(s))],
         views=[[["channels_last"]], []])
    case(w, "add_scalar", "add_scalar", lambda x: x + 2.5, [randn(3, 4, seed=next(s))], params=dict(value=2.5))
    case(w, "mul_scalar", "mul_scalar", lambda x: x * -0.75, [randn(3, 4, seed=next(s))], params=dict(value=-0.75))
    case(w, "affine", "affine", lambda x: x * 1.5 + 0.25, [randn(3, 4, seed=next(s))], params=dict(mul=1.5, add=0.25))
    # Reductions.
    for dims, keep in (([1], False), ([0, 2], True), ([-1], True), ([0, 1, 2], False)):
        p = dict(dims=dims, keepdim=keep)
        case(w, f"sum_{dims}_{keep}", "sum", lambda x, d=dims, k=keep: x.sum(d, keepdim=k), [randn(3, 4, 5, seed=next(s))],
             params=p)
        case(w, f"mean_{dims}_{keep}", "mean", lambda x, d=dims, k=keep: x.mean(d, keepdim=k),
             [randn(3, 4, 5, seed=next(s))], params=p)
        case(w, f"max_{dims}_{keep}", "max", lambda x, d=dims, k=keep: x.amax(d, keepdim=k),
             [randn(3, 4, 5, seed=next(s))], params=p)
        case(w, f"logsumexp_{dims}_{keep}", "logsumexp", lambda x, d=dims, k=keep: x.logsumexp(d, keepdim=k),
             [randn(3, 4, 5, seed=next(s)) * 3], params=p)
    case(w, "sum_all", "sum_all", torch.sum, [randn(4, 5, seed=next(s))])
    case(w, "mean_all", "mean_all", torch.mean, [randn(4, 5, seed=next(s))])
    case(w, "sum_permuted", "sum", lambda x: x.sum([1, 2], keepdim=False), [randn(2, 3, 4, 5, seed=next(s))],
         params=dict(dims=[1, 2], keepdim=False), views=[[["permute", [0, 2, 3, 1]]]])
    case(w, "mean_hw_channels_last", "mean", lambda x: x.mean((2, 3)), [randn(2, 6, 4, 4, seed=next(s))],
         params=dict(dims=[2, 3], keepdim=False), views=[[["channels_last"]]],
         note="the chapter's AdaptivePool on a channels-last activation")
    case(w, "logsumexp_extreme", "logsumexp", lambda x: x.logsumexp(-1, keepdim=True),
         [torch.tensor([[1e4, 0.0, -1e4, 5.0], [-88.0, -88.0, -88.0, -88.0], [100.0, 100.5, 99.0, -50.0],
                        [0.0, 0.0, 0.0, 1e-6]])], params=dict(dims=[-1], keepdim=True))
    # Views and joins: their backward is a scatter back into the base.
    case(w, "reshape", "reshape", lambda x: x.reshape(4, 6), [randn(2, 3, 4, seed=next(s))], params=dict(shape=[4, 6]))
    case(w, "reshape_of_transposed", "reshape", lambda x: x.reshape(12), [randn(3, 4, seed=next(s))],
         params=dict(shape=[12]), views=[[["t"]]])
    case(w, "flatten", "flatten", lambda x: x.flatten(1), [randn(2, 3, 4, seed=next(s))], params=dict(start=1, end=-1))
    case(w, "permute", "permute", lambda x: x.permute(2, 0, 1), [randn(2, 3, 4, seed=next(s))],
         params=dict(perm=[2, 0, 1]))
    case(w, "transpose", "transpose", lambda x: x.transpose(0, 2), [randn(2, 3, 4, seed=next(s))],
         params=dict(d0=0, d1=2))
    case(w, "narrow", "narrow", lambda x: x.narrow(1, 1, 2), [randn(3, 4, seed=next(s))],
         params=dict(dim=1, start=1, len=2))
    case(w, "expand", "expand", lambda x: x.expand(3, 4, 5), [randn(4, 1, seed=next(s))], params=dict(shape=[3, 4, 5]))
    case(w, "unsqueeze", "unsqueeze", lambda x: x.unsqueeze(1), [randn(3, 4, seed=next(s))], params=dict(dim=1))
    case(w, "squeeze", "squeeze", lambda x: x.squeeze(1), [randn(3, 1, 4, seed=next(s))], params=dict(dim=1))
    case(w, "contiguous_of_permuted", "contiguous", lambda x: x.contiguous(), [randn(2, 3, 4, seed=next(s))],
         views=[[["permute", [1, 2, 0]]]])
    case(w, "cat", "cat", lambda a, b, c: torch.cat([a, b, c], 1),
         [randn(2, 3, seed=next(s)), randn(2, 1, seed=next(s)), randn(3, 2, seed=next(s))], params=dict(dim=1),
         views=[[], [], [["t"]]])
    case(w, "stack", "stack", lambda a, b: torch.stack([a, b], 0), [randn(3, 4, seed=next(s)), randn(3, 4, seed=next(s))],
         params=dict(dim=0))
    case(w, "index_select", "index_select", lambda x: x.index_select(1, torch.tensor([2, 0, 2, 3])),
         [randn(3, 5, seed=next(s))], params=dict(dim=1, idx=[2, 0, 2, 3]))
    case(w, "pick", "pick", lambda x: x[torch.arange(4), torch.tensor([1, 0, 4, 4])], [randn(4, 5, seed=next(s))],
         params=dict(targets=[1, 0, 4, 4]), note="input[range(n), target], as in the chapter's nll")
    # Matrix products, with transposed (column-major) operands and batches.
    case(w, "matmul", "matmul", torch.matmul, [randn(5, 7, seed=next(s)), randn(7, 3, seed=next(s))])
    case(w, "matmul_transposed", "matmul", torch.matmul, [randn(7, 5, seed=next(s)), randn(3, 7, seed=next(s))],
         views=[[["t"]], [["t"]]], note="the chapter's Linear: x @ w.t()")
    case(w, "matmul_batched", "matmul", torch.matmul, [randn(2, 4, 6, seed=next(s)), randn(2, 6, 3, seed=next(s))])
    case(w, "matmul_batch_by_matrix", "matmul", torch.matmul, [randn(3, 4, 6, seed=next(s)), randn(6, 2, seed=next(s))])
    case(w, "matmul_large", "matmul", torch.matmul, [randn(64, 300, seed=next(s)), randn(300, 40, seed=next(s))],
         rtol=3e-5, note="k = 300: GEMM and torch sum in different orders")
    # Convolutions: kernel sizes 1, 3 and 7; strides 1, 2 and 3; paddings 0 to 3; with and without bias.
    convs = [
        ("conv1x1", 2, 8, 6, 6, 4, 1, 1, 0, True),
        ("conv1x1_s2_downsample", 2, 8, 7, 7, 16, 1, 2, 0, False),
        ("conv3x3", 2, 5, 7, 7, 6, 3, 1, 1, True),
        ("conv3x3_s2_chapter", 2, 16, 9, 9, 32, 3, 2, 1, True),
        ("conv3x3_s2_rgb_stem", 2, 3, 16, 16, 16, 3, 2, 1, True),
        ("conv3x3_s1_rgb", 2, 3, 8, 8, 8, 3, 1, 1, True),
        ("conv3x3_nopad_nonsquare", 1, 4, 6, 5, 3, 3, 1, 0, False),
        ("conv3x3_s3_p2", 2, 4, 10, 10, 5, 3, 3, 2, True),
        ("conv7x7_s2_resnet_stem", 2, 3, 20, 20, 8, 7, 2, 3, False),
        ("conv3x3_wide", 2, 64, 6, 6, 64, 3, 1, 1, False),
    ]
    for name, n, c, h, wd, f, k, st, pad, bias in convs:
        ins = [randn(n, c, h, wd, seed=next(s)), randn(f, c, k, k, seed=next(s)) * (2 / (c * k * k)) ** 0.5]
        if bias:
            ins.append(randn(f, seed=next(s)))
        fn = (lambda x, wt, b=None, st=st, pad=pad: F.conv2d(x, wt, b, stride=st, padding=pad))
        tol = 2e-5 if c * k * k > 100 else 1e-5
        p = dict(stride=st, padding=pad, relu=False)
        case(w, name, "conv2d", fn, ins, params=p, rtol=tol)
        if name in ("conv3x3_s2_chapter", "conv3x3_s2_rgb_stem"):
            # As in the chapter's pipeline: the NHWC batch permuted to NCHW, channels-last weights, fused ReLU.
            case(w, name + "_relu_nhwc", "conv2d", lambda x, wt, b, st=st, pad=pad: F.relu(F.conv2d(x, wt, b, st, pad)),
                 [ins[0].permute(0, 2, 3, 1).contiguous(), ins[1], ins[2]], params=dict(p, relu=True),
                 views=[[["permute", [0, 3, 1, 2]]], [["channels_last"]], []], rtol=tol)
    # Pooling, with padding (max: padding never wins; avg: padding counts as zeros, PyTorch's default).
    for k, st, pad in ((3, 2, 1), (2, 2, 0), (3, 1, 1), (3, 3, 0)):
        x = randn(2, 3, 7, 7, seed=next(s))
        p = dict(kernel=k, stride=st, padding=pad)
        case(w, f"max_pool_k{k}s{st}p{pad}", "max_pool2d", lambda x, k=k, st=st, pad=pad: F.max_pool2d(x, k, st, pad), [x],
             params=p)
        case(w, f"avg_pool_k{k}s{st}p{pad}", "avg_pool2d", lambda x, k=k, st=st, pad=pad: F.avg_pool2d(x, k, st, pad),
             [x.clone()], params=p)
    case(w, "max_pool_channels_last", "max_pool2d", lambda x: F.max_pool2d(x, 3, 2, 1), [randn(2, 4, 8, 8, seed=next(s))],
         params=dict(kernel=3, stride=2, padding=1), views=[[["channels_last"]]])
    # Training-mode batchnorm: output, batch mean and biased variance; the running statistics after one update
    # (momentum 0.1, unbiased variance) are outputs 3 and 4.
    for name, shape, view in (("batch_norm", (4, 3, 5, 5), []), ("batch_norm_channels_last", (4, 3, 5, 5),
                              [["channels_last"]]), ("batch_norm_tiny_spatial", (8, 16, 2, 2), [])):
        c = shape[1]
        rm0, rv0 = randn(c, seed=next(s)) * 0.1, positive(c, seed=next(s))

        def bn(x, wt, b, rm0=rm0, rv0=rv0):
            rm, rv = rm0.clone(), rv0.clone()
            y = F.batch_norm(x, rm, rv, wt, b, training=True, momentum=0.1, eps=1e-5)
            dims = (0, 2, 3)
            return y, x.mean(dims), x.var(dims, unbiased=False), rm, rv

        case(w, name, "batch_norm", bn, [randn(*shape, seed=next(s)) * 2 + 1, positive(c, seed=next(s)),
                                         randn(c, seed=next(s))], params=dict(eps=1e-5, momentum=0.1),
             views=[view, [], []], rtol=3e-5)
        w.put(f"{name}.running_mean0", rm0)
        w.put(f"{name}.running_var0", rv0)
    # The fused cross entropy: per-item -log_softmax(x)[i, y_i], with ordinary and extreme logits.
    case(w, "log_softmax_nll", "log_softmax_nll", lambda x: -F.log_softmax(x, -1)[torch.arange(6), torch.tensor(
        [0, 3, 9, 9, 1, 5])], [randn(6, 10, seed=next(s)) * 3], params=dict(targets=[0, 3, 9, 9, 1, 5]))
    extreme = torch.tensor([[1e4, 0.0, -1e4, 5.0, 5.0], [-88.0, -88.0, -88.0, -88.0, -88.0],
                            [100.0, 100.5, 99.0, -50.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1e-6], [-1e4, 0.0, 3e3, 0.0, 2.0]])
    case(w, "log_softmax_nll_extreme", "log_softmax_nll",
         lambda x: -F.log_softmax(x, -1)[torch.arange(5), torch.tensor([2, 0, 3, 4, 2])], [extreme],
         params=dict(targets=[2, 0, 3, 4, 2]), note="logits of +-1e4: losses of 2e4 and 0 stay exact")
    w.save(ROOT / "crates/tiny-tensor/tests/fixtures/ops.safetensors")


# ----------------------------------------------------------------------------- deterministic weights
M64 = (1 << 64) - 1


def fnv1a(name):
    h = 0xCBF29CE484222325
    for byte in name.encode():
        h = ((h ^ byte) * 0x100000001B3) & M64
    return h


def splitmix64(x):
    """SplitMix64 of an array of uint64 (wrapping arithmetic, as in Rust)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hashed_uniform(name, shape):
    """Values in [-1, 1), exact in f32: element i is 2 * (splitmix64(fnv1a(name) + i) >> 40) / 2^24 - 1.
    tiny-nn's tests compute the same function, so that resnet18's 11M weights need not be stored."""
    n = int(np.prod(shape)) if len(shape) else 1
    with np.errstate(over="ignore"):
        idx = np.arange(n, dtype=np.uint64) + np.uint64(fnv1a(name))
    k = (splitmix64(idx) >> np.uint64(40)).astype(np.float64)
    return torch.tensor((k / float(1 << 23) - 1.0).astype(np.float32).reshape(shape))


def hashed_state(model):
    """A resnet18 state_dict from hashed_uniform, scaled as an initialisation would be."""
    sd = {}
    for name, t in model.state_dict().items():
        u = hashed_uniform(name, tuple(t.shape))
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            v = torch.zeros((), dtype=torch.int64)
        elif leaf == "running_var":
            v = u * np.float32(0.25) + np.float32(1.0)
        elif leaf == "running_mean" or leaf == "bias":
            v = u * np.float32(0.1)
        elif leaf == "weight" and t.dim() == 1:
            v = u * np.float32(0.2) + np.float32(1.0)
        elif leaf == "weight" and t.dim() == 4:
            fan_out = t.shape[0] * t.shape[2] * t.shape[3]
            v = u * np.float32(math.sqrt(3.0 * 2.0 / fan_out))  # kaiming (fan_out) std, from a uniform
        else:
            v = u * np.float32(1.0 / math.sqrt(t.shape[1]))
        sd[name] = v
    return sd


def probe(name, shape):
    """A second hashed direction, to summarise a tensor by its dot product with it."""
    return hashed_uniform("probe." + name, shape)


# ----------------------------------------------------------------------------- tiny-nn: losses, layers, models
class Kinks:
    """The smallest distance of any ReLU input from 0, and of any max pool's winner from its runner-up (where the
    winner is positive: ties between zeros send the gradient to a ReLU that passes none either way), over every
    forward pass while watching. A whole-model comparison is only meaningful where this margin is well above
    the float noise by which two implementations' activations differ (about 1e-7 here): nearer a kink, one
    element's mask can flip and change the gradients of whole layers by percents."""

    def __init__(self):
        self.margin = float("inf")

    def see(self, x):
        self.margin = min(self.margin, x.detach().abs().min().item())

    def see_pool(self, x, k, stride, pad):
        t = F.pad(x.detach(), (pad,) * 4, value=float("-inf"))
        u = F.unfold(t, k, stride=stride)
        n, c = t.shape[:2]
        top = u.view(n, c, k * k, -1).topk(2, dim=2).values
        gap = (top[:, :, 0] - top[:, :, 1])[top[:, :, 0] > 0]
        if gap.numel():
            self.margin = min(self.margin, gap.min().item())

    def watch(self, model):
        """Hooks every nn.ReLU and nn.MaxPool2d of a torchvision model."""
        for m in model.modules():
            if isinstance(m, torch.nn.ReLU):
                m.register_forward_pre_hook(lambda mod, inp: self.see(inp[0]))
            if isinstance(m, torch.nn.MaxPool2d):
                m.register_forward_pre_hook(lambda mod, inp: self.see_pool(inp[0], mod.kernel_size, mod.stride,
                                                                           mod.padding))


KINKS = Kinks()
#: The margin a whole-model fixture must keep from every kink: simple_cnn's, and resnet18's (which has 12 times
#: the ReLU inputs, of which few batches keep more; its stability test below covers the rest).
MIN_MARGIN = 5e-6
RESNET_MARGIN = 5e-7
#: The relative noise put on every gradient element to test a whole-model run's stability, and how far the
#: perturbed parameter changes may then move, relative to each tensor's largest change.
PERTURBATION = 1e-5
STABLE = 2e-4
#: resnet18's learning rate over its three steps: at 0.01 most batches' runs are unstable in the sense above.
RESNET_LR = 1e-3
#: Where the search for a stable resnet18 batch starts. Each candidate costs seconds and few pass; an earlier
#: search had met input.574 as the first stable one past input.570, so the script starts there.
RESNET_SEARCH_FROM = 570

class ConvLayer(torch.nn.Module):
    def __init__(self, ni, nf, stride=1, act=True):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(nf, ni, 3, 3))
        self.b = torch.nn.Parameter(torch.zeros(nf))
        self.act, self.stride = act, stride
        (torch.nn.init.kaiming_normal_ if act else torch.nn.init.xavier_normal_)(self.w)

    def forward(self, x):
        x = F.conv2d(x, self.w, self.b, stride=self.stride, padding=1)
        if self.act:
            KINKS.see(x)
        return F.relu(x) if self.act else x


class Linear(torch.nn.Module):
    def __init__(self, ni, nf):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(nf, ni))
        self.b = torch.nn.Parameter(torch.zeros(nf))
        torch.nn.init.xavier_normal_(self.w)

    def forward(self, x):
        return x @ self.w.t() + self.b


class AdaptivePool(torch.nn.Module):
    def forward(self, x):
        return x.mean((2, 3))


def simple_cnn(n_out=10):
    """The chapter's model, as ch19_reference.py builds it: names 0.w, 0.b ... 5.w, 5.b."""
    return torch.nn.Sequential(ConvLayer(3, 16, 2), ConvLayer(16, 32, 2), ConvLayer(32, 64, 2), ConvLayer(64, 128, 2),
                               AdaptivePool(), Linear(128, n_out))


def cross_entropy(preds, y):
    """The chapter's: nll(x - x.logsumexp(-1)), the mean over the batch."""
    lsm = preds - preds.logsumexp(-1, keepdim=True)
    return -lsm[torch.arange(y.shape[0]), y].mean()


def train_steps(w, name, model, x, y, steps, lr, momentum):
    """Three steps of torch.optim.SGD with momentum on one batch, in training mode: the loss of each step."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    w.put(f"{name}.losses", torch.tensor(losses))
    return losses


def summarise(name, d):
    """A change `d` (flat, float64) as its sum, sum of squares, dot product with a hashed probe and largest
    magnitude; and the Cauchy-Schwarz scale of each, by which a difference in it is measured."""
    pr = probe(name, (d.numel(),)).flatten().double()
    ss = (d * d).sum()
    stats = torch.stack([d.sum(), ss, (d * pr).sum(), d.abs().max()])
    scales = torch.stack([(d.numel() * ss).sqrt(), ss, (ss * (pr * pr).sum()).sqrt(), d.abs().max()])
    return stats, scales


def float32_noise(rn32, rn64, start):
    """How far PyTorch's own float32 run is from float64 after the steps: the largest difference of a summary over
    its scale, and of an element over the tensor's largest change. tiny's test allows a multiple of these."""
    worst_summary = worst_element = 0.0
    for k, v in rn32.state_dict().items():
        d32 = (v.double() - start[k].double()).flatten()
        d64 = (rn64.state_dict()[k].double() - start[k].double()).flatten()
        if not d64.abs().max() > 0:
            continue
        (s32, _), (s64, scale) = summarise(k, d32), summarise(k, d64)
        worst_summary = max(worst_summary, ((s32 - s64).abs() / scale).max().item())
        worst_element = max(worst_element, ((d32 - d64).abs().max() / d64.abs().max()).item())
    return dict(summary=worst_summary, element=worst_element)


def nn():
    global KINKS
    w = Writer()
    s = iter(range(5000, 10_000))
    # The chapter's losses, composite (log_softmax via logsumexp, then nll), ordinary and extreme.
    y = [0, 3, 9, 9, 1, 5]
    case(w, "log_softmax", "log_softmax", lambda x: x - x.logsumexp(-1, keepdim=True), [randn(6, 10, seed=next(s)) * 3])
    case(w, "nll", "nll", lambda x: -x[torch.arange(6), torch.tensor(y)].mean(), [randn(6, 10, seed=next(s))],
         params=dict(targets=y))
    case(w, "cross_entropy", "cross_entropy", lambda x: F.cross_entropy(x, torch.tensor(y)),
         [randn(6, 10, seed=next(s)) * 3], params=dict(targets=y))
    extreme = torch.tensor([[1e4, 0.0, -1e4, 5.0], [-88.0, -88.0, -88.0, -88.0], [100.0, 100.5, 99.0, -50.0]])
    case(w, "log_softmax_extreme", "log_softmax", lambda x: x - x.logsumexp(-1, keepdim=True), [extreme])
    case(w, "cross_entropy_extreme", "cross_entropy", lambda x: F.cross_entropy(x, torch.tensor([2, 1, 3])),
         [extreme.clone()], params=dict(targets=[2, 1, 3]))
    # BatchNorm2d as a module: two training batches (running statistics, momentum 0.1, unbiased variance, the
    # batch counter), then evaluation with the running statistics.
    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(positive(3, seed=next(s)))
        bn.bias.copy_(randn(3, seed=next(s)))
    for t in ("weight", "bias"):
        w.put(f"batchnorm_module.{t}", getattr(bn, t))
    xs = [randn(4, 3, 5, 5, seed=next(s)) * 2 + 1 for _ in range(3)]
    bn.train()
    for i in range(2):
        w.put(f"batchnorm_module.x{i}", xs[i])
        w.put(f"batchnorm_module.train_out{i}", bn(xs[i]))
    for t in ("running_mean", "running_var", "num_batches_tracked"):
        w.put(f"batchnorm_module.{t}", getattr(bn, t).float())
    bn.eval()
    w.put("batchnorm_module.x2", xs[2])
    case(w, "batchnorm_eval", "batchnorm_eval", lambda x, wt, b, rm, rv: F.batch_norm(x, rm, rv, wt, b, False, 0.1, 1e-5),
         [xs[2], bn.weight.detach(), bn.bias.detach(), bn.running_mean, bn.running_var], grads=[True, True, True, False,
                                                                                                 False], rtol=2e-5)
    # simple_cnn from saved weights on one fixed batch: eval logits, then 3 SGD-momentum steps. The batch is the
    # first of a few seeded ones whose run keeps MIN_MARGIN from every kink.
    torch.manual_seed(0)
    init = simple_cnn(10).state_dict()
    yb = torch.arange(8) % 10
    for seed in range(7000, 7100):
        KINKS = Kinks()
        model = simple_cnn(10)
        model.load_state_dict(init)
        x = randn(8, 3, 32, 32, seed=seed)
        probe_run = Writer()
        model.eval()
        model(x)
        train_steps(probe_run, "probe", model, x, yb, steps=3, lr=0.1, momentum=0.9)
        if KINKS.margin >= MIN_MARGIN:
            break
    print(f"simple_cnn: batch seed {seed}, kink margin {KINKS.margin:.1e}")
    KINKS = Kinks()
    model = simple_cnn(10)
    model.load_state_dict(init)
    for k, v in init.items():
        w.put(f"simple_cnn.init.{k}", v)
    w.put("simple_cnn.x", x)
    w.put("simple_cnn.y", yb.float())
    model.eval()
    w.put("simple_cnn.eval_logits", model(x))
    train_steps(w, "simple_cnn", model, x, yb, steps=3, lr=0.1, momentum=0.9)
    for k, v in model.state_dict().items():
        w.put(f"simple_cnn.after.{k}", v)
    sc_margin = KINKS.margin
    # resnet18 (torchvision) from hashed weights on a hashed batch of 4 images at 64 px: eval logits, the gradients
    # of one training step, then 3 SGD-momentum steps, summarised. ReLU networks with batchnorm can be chaotic over
    # a few steps: where some ReLU input or max pool gap is near 0, float32-sized differences flip a mask and change
    # whole layers' updates by percents (measured: 1e-5 noise on the gradients moved some changes by 5%). So the
    # batch is the first hashed one (from RESNET_SEARCH_FROM on) whose run (a) keeps RESNET_MARGIN from every
    # kink and (b) is stable: PyTorch
    # itself, in float64 with PERTURBATION relative noise on every gradient element (tiny's float32 gradients are
    # within 1e-5 of the largest of PyTorch's, most elements far closer), stays within STABLE of the plain run.
    import torchvision

    def resnet_run(salt, w, dtype=torch.float32, noise=0.0, seed=0):
        kinks = Kinks()
        rn = torchvision.models.resnet18(num_classes=10)
        sd = hashed_state(rn)
        rn.load_state_dict(sd)
        rn = rn.to(dtype)
        kinks.watch(rn)
        xr = hashed_uniform(salt, (4, 3, 64, 64)).to(dtype)
        yr = torch.tensor([3, 1, 4, 1])
        rn.eval()
        w.put("resnet18.eval_logits", rn(xr))
        rn.train()
        opt = torch.optim.SGD(rn.parameters(), lr=RESNET_LR, momentum=0.9)
        gen = torch.Generator().manual_seed(seed)
        losses = []
        for step in range(3):
            opt.zero_grad()
            loss = cross_entropy(rn(xr), yr)
            loss.backward()
            if step == 0:
                for k, p in rn.named_parameters():
                    d, _ = summarise(k, p.grad.double().flatten())
                    w.put(f"resnet18.grad.{k}", d)
                    w.put(f"resnet18.grad_head.{k}", p.grad.flatten()[:8])
            if noise:
                for p in rn.parameters():
                    p.grad.mul_(1 + noise * torch.randn(p.shape, generator=gen).to(dtype))
            opt.step()
            losses.append(loss.item())
        w.put("resnet18.losses", torch.tensor(losses))
        rn.eval()
        w.put("resnet18.eval_logits_after", rn(xr))
        return rn, sd, xr, yr, kinks.margin, losses

    def changes(rn, sd):
        return {k: (v.double() - sd[k].double()).flatten() for k, v in rn.state_dict().items()}

    for k in range(RESNET_SEARCH_FROM, RESNET_SEARCH_FROM + 1000):
        salt = f"input.{k}"
        *_, margin, losses = resnet_run(salt, Writer())
        if margin < RESNET_MARGIN:
            continue
        base = resnet_run(salt, Writer(), torch.float64)
        c0 = changes(base[0], base[1])
        worst = 0.0
        for seed in range(3):
            c = changes(*resnet_run(salt, Writer(), torch.float64, PERTURBATION, seed)[:2])
            worst = max(worst, max(((c[n] - c0[n]).abs().max() / c0[n].abs().max()).item() for n in c0
                                   if c0[n].abs().max() > 0))
            if worst > STABLE:
                break
        print(f"resnet18: batch {salt}: kink margin {margin:.1e}, perturbed changes move {worst:.1e}", flush=True)
        if worst <= STABLE:
            break
    rn64 = base[0]
    rn, sd, xr, yr, rn_margin, _ = resnet_run(salt, w)
    noise = float32_noise(rn, rn64, sd)
    noise["perturbed"] = worst
    keys = [(k, list(v.shape)) for k, v in rn.state_dict().items()]
    w.put("resnet18.y", yr.float())
    # Each tensor's change from its initial value, summarised (see summarise).
    for k, v in rn.state_dict().items():
        w.put(f"resnet18.delta.{k}", summarise(k, (v.double() - sd[k].double()).flatten())[0])
    rn64.eval()
    after64 = rn64(xr.double())
    after = w.tensors["resnet18.eval_logits_after"]
    noise["logits_after"] = ((after.double() - after64).abs().max() / after64.abs().max()).item()
    w.cases.append(dict(name="resnet18", op="model", params=dict(keys=keys, lr=RESNET_LR, momentum=0.9, steps=3,
                                                                 input=salt, kink_margin=rn_margin,
                                                                 float32_noise=noise),
                        views=[], grads=[], outputs=0, rtol=0, note="torchvision's state_dict keys and shapes"))
    w.cases.append(dict(name="simple_cnn", op="model", params=dict(lr=0.1, momentum=0.9, steps=3,
                                                                   kink_margin=sc_margin),
                        views=[], grads=[], outputs=0, rtol=0, note=None))
    w.save(ROOT / "crates/tiny-nn/tests/fixtures/nn.safetensors")


# ----------------------------------------------------------------------------- label smoothing
def fastai_label_smoothing(x, y, eps):
    """fastai's LabelSmoothingCrossEntropy(eps, reduction='mean') (fastai/losses.py), written out: the mean of
    -sum_c log p, times eps / c, plus (1 - eps) times the mean nll."""
    c = x.shape[1]
    log_preds = F.log_softmax(x, dim=1)
    return (-log_preds.sum(dim=1)).mean() * eps / c + (1 - eps) * F.nll_loss(log_preds, y)


def label_smoothing():
    """`F.cross_entropy(x, y, label_smoothing=eps)`: per item (tiny-tensor's fused op) and averaged (tiny-nn's loss),
    for a few eps including 0 and fastai's 0.1, on ordinary, strided, wide and +-1e4 logits. Its own files, so that
    the other fixtures are not rewritten."""
    s = iter(range(20_000, 21_000))
    y = [0, 3, 9, 9, 1, 5]
    extreme = torch.tensor([[1e4, 0.0, -1e4, 5.0, 5.0], [-88.0, -88.0, -88.0, -88.0, -88.0],
                            [100.0, 100.5, 99.0, -50.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1e-6], [-1e4, 0.0, 3e3, 0.0, 2.0]])
    y_extreme = [2, 0, 3, 4, 2]
    # tiny-tensor: the op, no reduction.
    w = Writer()
    for eps in (0.0, 0.1, 0.25, 1.0):
        case(w, f"log_softmax_nll_smooth_{eps}", "log_softmax_nll_smooth",
             lambda x, eps=eps: F.cross_entropy(x, torch.tensor(y), label_smoothing=eps, reduction="none"),
             [randn(6, 10, seed=next(s)) * 3], params=dict(targets=y, eps=eps))
    case(w, "log_softmax_nll_smooth_transposed", "log_softmax_nll_smooth",
         lambda x: F.cross_entropy(x, torch.tensor(y), label_smoothing=0.1, reduction="none"),
         [randn(10, 6, seed=next(s)) * 3], params=dict(targets=y, eps=0.1), views=[[["t"]]])
    yw = [999, 0, 500, 17]
    case(w, "log_softmax_nll_smooth_1000_classes", "log_softmax_nll_smooth",
         lambda x: F.cross_entropy(x, torch.tensor(yw), label_smoothing=0.1, reduction="none"),
         [randn(4, 1000, seed=next(s)) * 10], params=dict(targets=yw, eps=0.1))
    for eps in (0.0, 0.1, 0.5):
        case(w, f"log_softmax_nll_smooth_extreme_{eps}", "log_softmax_nll_smooth",
             lambda x, eps=eps: F.cross_entropy(x, torch.tensor(y_extreme), label_smoothing=eps, reduction="none"),
             [extreme.clone()], params=dict(targets=y_extreme, eps=eps),
             note="logits of +-1e4: the smoothing term's mean of -log p reaches 1.2e4 and stays exact")
    w.save(ROOT / "crates/tiny-tensor/tests/fixtures/label_smoothing.safetensors")
    # tiny-nn: the loss, averaged over the batch, which is also fastai's LabelSmoothingCrossEntropy.
    w = Writer()
    for eps in (0.0, 0.1, 0.3, 1.0):
        x = randn(6, 10, seed=next(s)) * 3
        torch.testing.assert_close(fastai_label_smoothing(x, torch.tensor(y), eps),
                                   F.cross_entropy(x, torch.tensor(y), label_smoothing=eps), rtol=1e-6, atol=1e-6)
        case(w, f"cross_entropy_smooth_{eps}", "cross_entropy_smooth",
             lambda x, eps=eps: F.cross_entropy(x, torch.tensor(y), label_smoothing=eps), [x],
             params=dict(targets=y, eps=eps))
    case(w, "cross_entropy_smooth_extreme", "cross_entropy_smooth",
         lambda x: F.cross_entropy(x, torch.tensor(y_extreme), label_smoothing=0.1), [extreme.clone()],
         params=dict(targets=y_extreme, eps=0.1))
    w.save(ROOT / "crates/tiny-nn/tests/fixtures/label_smoothing.safetensors")


# ----------------------------------------------------------------------------- multi-label: binary cross entropy
def multi_label():
    """`F.binary_cross_entropy_with_logits`: per element (tiny-tensor's fused op, gradients to the logits and to soft
    targets) and averaged (tiny-nn's loss, which is fastai's `BCEWithLogitsLossFlat`), on ordinary, strided and
    +-1e4 logits. Its own files, so that the other fixtures are not rewritten."""
    s = iter(range(22_000, 23_000))
    hot = (torch.rand(6, 10, generator=torch.Generator().manual_seed(next(s))) < 0.3).float()
    extreme = torch.tensor([[1e4, -1e4, 0.0, 88.0, -88.0], [-1e4, 1e4, 1e-6, 30.0, -30.0]])
    hot_extreme = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0, 0.0]])
    bce = lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction="none")
    w = Writer()
    case(w, "bce_with_logits", "bce_with_logits", bce, [randn(6, 10, seed=next(s)) * 3, hot], grads=[True, False])
    case(w, "bce_with_logits_soft", "bce_with_logits", bce,
         [randn(6, 10, seed=next(s)) * 3, torch.rand(6, 10, generator=torch.Generator().manual_seed(next(s)))],
         note="soft targets (a mix of two rows), both differentiated")
    case(w, "bce_with_logits_transposed", "bce_with_logits", bce, [randn(10, 6, seed=next(s)) * 3, hot],
         views=[[["t"]], []], grads=[True, False])
    case(w, "bce_with_logits_extreme", "bce_with_logits", bce, [extreme.clone(), hot_extreme], grads=[True, False],
         note="logits of +-1e4 and +-88: the loss stays finite and exact")
    w.save(ROOT / "crates/tiny-tensor/tests/fixtures/bce.safetensors")
    # tiny-nn: the loss averaged over every element, fastai's BCEWithLogitsLossFlat(), with flags as targets.
    w = Writer()
    for i, (n, c) in enumerate([(6, 10), (3, 1), (4, 20)]):
        t = (torch.rand(n, c, generator=torch.Generator().manual_seed(next(s))) < 0.4).float()
        case(w, f"bce_with_logits_flat_{i}", "bce_with_logits_flat",
             lambda x, t=t: F.binary_cross_entropy_with_logits(x, t), [randn(n, c, seed=next(s)) * 2],
             params=dict(flags=[int(v) for v in t.flatten().tolist()]))
    case(w, "bce_with_logits_flat_extreme", "bce_with_logits_flat",
         lambda x: F.binary_cross_entropy_with_logits(x, hot_extreme), [extreme.clone()],
         params=dict(flags=[int(v) for v in hot_extreme.flatten().tolist()]))
    w.save(ROOT / "crates/tiny-nn/tests/fixtures/bce.safetensors")


# ----------------------------------------------------------------------------- fused activations
def fused():
    """The ops that fuse a ReLU into what precedes it: training batchnorm then ReLU (tiny's `batch_norm_relu`), NCHW
    and channels-last, with the running statistics after one update; and `relu(a + b)` (`add_relu`), broadcasting.
    Its own file, so that the other fixtures are not rewritten."""
    s = iter(range(24_000, 25_000))
    w = Writer()
    for name, view in (("batch_norm_relu", []), ("batch_norm_relu_channels_last", [["channels_last"]])):
        c = 3
        rm0, rv0 = randn(c, seed=next(s)) * 0.1, positive(c, seed=next(s))

        def bn_relu(x, wt, b, rm0=rm0, rv0=rv0):
            rm, rv = rm0.clone(), rv0.clone()
            y = F.relu(F.batch_norm(x, rm, rv, wt, b, training=True, momentum=0.1, eps=1e-5))
            dims = (0, 2, 3)
            return y, x.mean(dims), x.var(dims, unbiased=False), rm, rv

        case(w, name, "batch_norm", bn_relu, [randn(4, c, 5, 5, seed=next(s)) * 2 + 1, positive(c, seed=next(s)),
                                              randn(c, seed=next(s))], params=dict(eps=1e-5, momentum=0.1, relu=True),
             views=[view, [], []], rtol=3e-5, note="about half the outputs are zeros: the ReLU's mask matters")
        w.put(f"{name}.running_mean0", rm0)
        w.put(f"{name}.running_var0", rv0)
    case(w, "add_relu", "add_relu", lambda a, b: F.relu(a + b), [randn(2, 3, 4, seed=next(s)),
                                                                randn(3, 1, seed=next(s))])
    case(w, "add_relu_channels_last", "add_relu", lambda a, b: F.relu(a + b),
         [randn(2, 4, 3, 3, seed=next(s)), randn(2, 4, 3, 3, seed=next(s))], views=[[["channels_last"]], []])
    w.save(ROOT / "crates/tiny-tensor/tests/fixtures/fused.safetensors")


# ----------------------------------------------------------------------------- tiny-tensor: warp_perspective
def perspective_grid(mats, h, w):
    """fastai's sampling grid for one 3x3 matrix per image: the pixel centres in [-1, 1] (align_corners=True),
    through each matrix, divided by the third coordinate; `[n, h, w, 2]`, in float64."""
    def side(size):
        return torch.linspace(-1, 1, size, dtype=torch.float64) if size > 1 else torch.zeros(1, dtype=torch.float64)
    y, x = torch.meshgrid(side(h), side(w), indexing="ij")
    pts = torch.stack([x, y, torch.ones_like(x)], dim=-1).reshape(-1, 3)
    uvs = torch.einsum("nij,pj->npi", mats.to(torch.float64).reshape(-1, 3, 3), pts)
    return (uvs[..., :2] / uvs[..., 2:]).reshape(-1, h, w, 2)


def warp():
    """`Tensor::warp_perspective` against `F.grid_sample(x, grid, mode="bilinear", align_corners=True)` with
    reflection and zeros padding, on random images and perspective-ish matrices (rotation, zoom, shift, shear
    and perspective terms, some reading far outside the image). grid_sample runs in float64 on float32 values,
    the exact answer that tiny's float64 coordinates approach. Its own file, so that the other fixtures are not
    rewritten. A case stores its matrices as `<case>.mats` ([n, 9], row-major)."""
    w = Writer()
    g = torch.Generator().manual_seed(31_000)

    def mats_for(n, strength):
        out = []
        for _ in range(n):
            r = (torch.rand(8, generator=g, dtype=torch.float64) * 2 - 1) * strength
            ang, zoom = r[0] * math.pi, math.exp(r[1])
            c, s = math.cos(ang) * zoom, math.sin(ang) * zoom
            m = torch.tensor([[c + r[2] * 0.3, -s, r[3]], [s, c + r[4] * 0.3, r[5]], [r[6] * 0.4, r[7] * 0.4, 1.0]],
                             dtype=torch.float64)
            out.append(m.reshape(9))
        return torch.stack(out).to(torch.float32)

    shapes = [(2, 3, 7, 9), (3, 2, 8, 8), (2, 1, 5, 1), (1, 4, 1, 6)]
    for k, (n, c, h, wd) in enumerate(shapes):
        x = randn(n, c, h, wd, seed=31_100 + k)
        for strength in (0.3, 1.0):
            mats = mats_for(n, strength)
            grid = perspective_grid(mats, h, wd)
            for pad in ("reflection", "zeros"):
                name = f"warp_{n}x{c}x{h}x{wd}_{strength}_{pad}"
                views = [[["channels_last"]]] if k == 0 and strength == 1.0 else None
                case(w, name, "warp_perspective",
                     lambda x, grid=grid, pad=pad: F.grid_sample(
                         x.to(torch.float64), grid, mode="bilinear", padding_mode=pad, align_corners=True
                     ).to(torch.float32),
                     [x], params=dict(pad=pad), views=views, grads=[False], rtol=1e-5)
                w.put(f"{name}.mats", mats)
    w.save(ROOT / "crates/tiny-tensor/tests/fixtures/warp.safetensors")


# ----------------------------------------------------------------------------- tiny-optim: five steps
def optim():
    w = Writer()
    shapes = [(7, 5), (3,)]
    configs = [
        ("sgd", torch.optim.SGD, dict(lr=0.1)),
        ("sgd_wd", torch.optim.SGD, dict(lr=0.1, weight_decay=0.01)),
        ("sgd_momentum", torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
        ("sgd_momentum_dampening", torch.optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.3)),
        ("sgd_nesterov", torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
        ("sgd_nesterov_wd", torch.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05)),
        ("adam", torch.optim.Adam, dict(lr=0.01)),
        ("adam_betas_eps_wd", torch.optim.Adam, dict(lr=0.003, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)),
        ("adamw", torch.optim.AdamW, dict(lr=0.01)),
        ("adamw_wd", torch.optim.AdamW, dict(lr=0.005, betas=(0.85, 0.99), weight_decay=0.3)),
    ]
    for ci, (name, cls, kw) in enumerate(configs):
        params = [torch.nn.Parameter(randn(*sh, seed=100 * ci + i)) for i, sh in enumerate(shapes)]
        for i, p in enumerate(params):
            w.put(f"{name}.p{i}.init", p)
        opt = cls(params, **{"foreach": False, **kw})
        for step in range(5):
            for i, p in enumerate(params):
                g = randn(*p.shape, seed=10_000 + 100 * ci + 10 * step + i)
                w.put(f"{name}.p{i}.grad{step}", g)
                p.grad = g.clone()
            opt.step()
            for i, p in enumerate(params):
                w.put(f"{name}.p{i}.step{step}", p)
        kw = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}
        w.cases.append(dict(name=name, op=cls.__name__, params=kw, views=[], grads=[], outputs=0, rtol=0,
                            note=f"{len(shapes)} parameters, 5 steps"))
    w.save(ROOT / "crates/tiny-optim/tests/fixtures/optim.safetensors")


# ----------------------------------------------------------------------------- tiny-data: PIL's input
def inputs(size=64):
    """A few small images in every format tiny decodes (JPEG, PNG, BMP, WebP), and what the chapter's
    `Image.open(f).resize((64, 64)).convert('RGB')` makes of each (PIL 13: BICUBIC with antialiasing before
    the conversion; NEAREST for palette and 1-bit images; premultiplied alpha for RGBA)."""
    from PIL import Image

    out_dir = ROOT / "crates/tiny-data/tests/fixtures/pil"
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    h, wd = 120, 160
    yy, xx = np.mgrid[0:h, 0:wd].astype(np.float64)
    # Smooth gradients, a few hard edges (a disc and a bar) and mild noise: what photos and resizers meet.
    r = 128 + 100 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    g = 40 + 1.2 * xx + 20 * np.sin(yy / 5.0)
    b = 220 - 1.5 * yy
    disc = (xx - 100) ** 2 + (yy - 50) ** 2 < 30 ** 2
    r[disc], g[disc], b[disc] = 250, 30, 60
    bar = (xx > 20) & (xx < 35)
    r[bar], g[bar], b[bar] = 10, 10, 10
    rgb = np.stack([r, g, b], -1) + rng.normal(0, 6, (h, wd, 3))
    im = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    files = {
        "colour_420.jpg": lambda p: im.save(p, format="JPEG"),
        "colour_444.jpg": lambda p: im.save(p, format="JPEG", quality=95, subsampling=0),
        "grey.jpg": lambda p: im.convert("L").save(p, format="JPEG"),
        "cmyk.jpg": lambda p: im.convert("CMYK").save(p, format="JPEG", quality=90),
        "colour.png": lambda p: im.save(p),
        "palette.png": lambda p: im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(p),
        "grey_1bit.png": lambda p: im.convert("1").save(p),
        "rgba.png": lambda p: rgba(im).save(p),
        "colour.bmp": lambda p: im.save(p, format="BMP"),
        "palette.bmp": lambda p: im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(p, format="BMP"),
        "grey.bmp": lambda p: im.convert("L").save(p, format="BMP"),
        "lossless.webp": lambda p: im.save(p, format="WEBP", lossless=True),
        "lossy.webp": lambda p: im.save(p, format="WEBP", quality=80),
    }
    # The formats added later also keep PIL's decode at full size, `convert('RGB')`, to hold the decoders to it.
    full_size = {"colour.bmp", "palette.bmp", "grey.bmp", "lossless.webp", "lossy.webp"}

    def rgba(im):
        a = im.copy()
        a.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, wd).astype(np.uint8), (h, 1))))
        return a

    w = Writer()
    for name, write in files.items():
        path = out_dir / name
        # Committed images are kept as they are (another encoder version would rewrite their bytes).
        if not path.exists():
            write(path)
        with Image.open(path) as f:
            mode = f.mode
            px = np.asarray(f.resize((size, size)).convert("RGB"))
            if name in full_size:
                w.put(f"{name}.full", torch.tensor(np.asarray(f.convert("RGB")).astype(np.float32)))
        w.put(name, torch.tensor(px.astype(np.float32)))
        w.cases.append(dict(name=name, op="pil_input", params=dict(mode=mode, size=size), views=[], grads=[],
                            outputs=1, rtol=0, note=None))
    w.save(ROOT / "crates/tiny-data/tests/fixtures/pil_64.safetensors")


# ----------------------------------------------------------------------------- bf16 autocast
def under_bf16(fn):
    """`fn` under torch.autocast("cpu", dtype=torch.bfloat16), its output cast back to float32 as fastai's to_bf16()
    and ch19_reference.py --amp bf16 do before the loss; the backward runs in the ops' own (bf16) precision."""
    def run(*xs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(*xs)
        return out.float()
    return run


#: The tolerance of a bf16 case: PyTorch rounds each autocast op's output (and its input gradient) to bf16, a
#: relative error of at most 2^-9, where tiny keeps the f32 sum of the same exact bf16 products; 2^-8 covers
#: that with room for the different order of the f32 sums.
BF16_RTOL = 2.0 ** -8


def autocast():
    w = Writer()
    s = iter(range(20_000, 30_000))
    # The bias gradient sums the cotangent over the batch and the pixels, where the sum cancels: PyTorch sums the
    # cotangent rounded to bf16 (it passes the cast of the output), tiny the f32 one, and the roundings add up to
    # 5% of the small sum (measured); a tolerance of 2^-6 holds that.
    bias_sum = "the bias gradient: PyTorch sums bf16-rounded cotangents, tiny f32 ones"
    # Winograd multiplies transformed tiles and weights, each rounded after its transform: tiny's unit test
    # bf16_winograd_errs_within_twice_what_a_direct_bf16_convolution_does measures 1.5 times the rms error of a
    # direct bf16 convolution; element by element against PyTorch, up to 6 times 2^-8 (measured), so 2^-5.
    wino = "Winograd F(2x2, 3x3) in bf16 (on AVX-512 CPUs): transformed operands rounded, 1.5x bf16's rms error"
    convs = [
        # name, n, c, h, w, f, k, stride, padding, bias, relu, tolerance, note
        ("bf16_conv3x3_s2_chapter", 2, 16, 9, 9, 32, 3, 2, 1, True, True, 2.0 ** -6, bias_sum),
        ("bf16_conv3x3_s2_rgb_stem", 2, 3, 16, 16, 16, 3, 2, 1, True, True, 2.0 ** -6, bias_sum),
        ("bf16_conv1x1_s2_downsample", 2, 8, 7, 7, 16, 1, 2, 0, False, False, BF16_RTOL, None),
        ("bf16_conv7x7_s2_resnet_stem", 2, 3, 20, 20, 8, 7, 2, 3, False, False, BF16_RTOL, None),
        ("bf16_conv3x3_wide", 2, 32, 5, 5, 32, 3, 1, 1, False, False, BF16_RTOL, None),
        ("bf16_conv3x3_winograd", 2, 16, 16, 16, 16, 3, 1, 1, True, False, 2.0 ** -5, wino),
    ]
    for name, n, c, h, wd, f, k, st, pad, bias, relu, tol, why in convs:
        ins = [randn(n, c, h, wd, seed=next(s)), randn(f, c, k, k, seed=next(s)) * (2 / (c * k * k)) ** 0.5]
        if bias:
            ins.append(randn(f, seed=next(s)))
        conv = (lambda x, wt, b=None, st=st, pad=pad, relu=relu:
                (F.relu if relu else (lambda t: t))(F.conv2d(x, wt, b, stride=st, padding=pad)))
        case(w, name, "conv2d", under_bf16(conv), ins, params=dict(stride=st, padding=pad, relu=relu, autocast="bf16"),
             rtol=tol, note="under torch.autocast(bfloat16)" + (f"; {why}" if why else ""))
    # The cast itself, which the bias of a bf16 convolution goes through: to nearest even, the gradient unchanged.
    # (Not denormals: tiny flushes them to zero as vcvtne2ps2bf16 does, where PyTorch's .to keeps them.)
    ties = torch.tensor([1 + 2 ** -8, 1 + 3 * 2 ** -8, -2.5, 3.0e38, 0.1])
    # The gradient passes unchanged (straight through): PyTorch's own round trip would also round the gradient to bf16
    # on its way back, which tiny, keeping gradients f32, does not.
    case(w, "round_bf16", "round_bf16", lambda x: x + (x.to(torch.bfloat16).float() - x).detach(),
         [torch.cat([ties, randn(10, seed=next(s))])], rtol=0.0,
         note="x.to(torch.bfloat16).float(), the gradient straight through: exact")
    mms = [
        ("bf16_matmul_large", [randn(48, 200, seed=next(s)), randn(200, 24, seed=next(s))], None),
        ("bf16_matmul_batched", [randn(3, 4, 66, seed=next(s)), randn(66, 5, seed=next(s))], None),
        ("bf16_linear_chapter", [randn(8, 128, seed=next(s)), randn(10, 128, seed=next(s)) * 0.1], [[], [["t"]]]),
    ]
    for name, ins, views in mms:
        case(w, name, "matmul", under_bf16(torch.matmul), ins, params=dict(autocast="bf16"), views=views,
             rtol=BF16_RTOL, note="under torch.autocast(bfloat16)")
    w.save(ROOT / "crates/tiny-tensor/tests/fixtures/autocast_bf16.safetensors")


#: How far tiny's bf16 run may be from PyTorch's, in units of how far PyTorch's bf16 run is from its float32 run:
#: both round the same products' operands to bf16, PyTorch also every activation (tiny keeps them f32), so tiny's
#: distance to PyTorch's bf16 is about PyTorch's own bf16 noise.
BF16_NOISE_FACTOR = 2.0


def autocast_models():
    """simple_cnn and resnet18 from the nn fixture's weights and batches: eval logits and the first training step's
    gradients, under bf16 autocast and in float32, the gradients summarised as in nn()."""
    import torchvision
    from safetensors import safe_open
    from safetensors.torch import load_file

    w = Writer()
    nn_file = ROOT / "crates/tiny-nn/tests/fixtures/nn.safetensors"
    stored = load_file(str(nn_file))
    with safe_open(str(nn_file), "pt") as f:
        nn_cases = {c["name"]: c for c in json.loads(f.metadata()["cases"])}

    def simple():
        m = simple_cnn(10)
        m.load_state_dict({k[len("simple_cnn.init."):]: v for k, v in stored.items() if k.startswith("simple_cnn.init.")})
        return m

    def resnet():
        m = torchvision.models.resnet18(num_classes=10)
        m.load_state_dict(hashed_state(m))
        return m

    salt = nn_cases["resnet18"]["params"]["input"]
    models = [("simple_cnn", simple, stored["simple_cnn.x"], stored["simple_cnn.y"].long()),
              ("resnet18", resnet, hashed_uniform(salt, (4, 3, 64, 64)), stored["resnet18.y"].long())]
    for name, build, x, y in models:
        noise = {}
        runs = {}
        for precision in ("fp32", "bf16"):
            run = under_bf16 if precision == "bf16" else (lambda f: f)
            m = build()
            m.eval()
            logits = run(m)(x)
            m.train()
            loss = cross_entropy(run(m)(x), y)
            loss.backward()
            w.put(f"{name}.{precision}.eval_logits", logits)
            w.put(f"{name}.{precision}.loss", loss.reshape(1))
            grads = {k: p.grad.double().flatten() for k, p in m.named_parameters()}
            for k, g in grads.items():
                w.put(f"{name}.{precision}.grad.{k}", summarise(k, g)[0])
            runs[precision] = (logits.double(), grads)
        (l32, g32), (l16, g16) = runs["fp32"], runs["bf16"]
        noise["logits"] = ((l16 - l32).abs().max() / l32.abs().max()).item()
        noise["grads"] = max(((summarise(k, g16[k])[0] - summarise(k, g32[k])[0]).abs() / summarise(k, g32[k])[1])
                             .max().item() for k in g32)
        print(f"{name}: PyTorch bf16 vs float32: logits {noise['logits']:.1e}, gradient summaries {noise['grads']:.1e}")
        w.cases.append(dict(name=f"{name}_bf16", op="model_autocast",
                            params=dict(factor=BF16_NOISE_FACTOR, bf16_noise=noise, input=salt if name == "resnet18"
                                        else None), views=[], grads=[], outputs=0, rtol=0,
                            note="tiny's bf16 against PyTorch's within factor x PyTorch's own bf16-vs-float32 distance"))
    w.save(ROOT / "crates/tiny-nn/tests/fixtures/autocast_bf16.safetensors")


# ----------------------------------------------------------------------------- tiny-nn: the model zoo
def fastai_conv_layer(ni, nf, ks=3, stride=1, zero_bn=False, act=True):
    """fastai's `ConvLayer` with its defaults (fastai/layers.py): a bias-free conv with padding ks//2, a batchnorm
    (weight 0 for NormType.BatchZero), ReLU when `act`; fastai is not installed here, so this follows its source."""
    bn = torch.nn.BatchNorm2d(nf)
    torch.nn.init.constant_(bn.weight, 0.0 if zero_bn else 1.0)
    layers = [torch.nn.Conv2d(ni, nf, ks, stride=stride, padding=ks // 2, bias=False), bn]
    if act:
        layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


class FastaiResBlock(torch.nn.Module):
    """fastai's `ResBlock` (fastai/layers.py) with xresnet's arguments: convpath, and idpath = [AvgPool2d(2,
    ceil_mode=True) if strided, ConvLayer 1x1 if the width changes] (pool_first)."""

    def __init__(self, expansion, ni, nf, stride=1):
        super().__init__()
        nh, nf, ni = nf, nf * expansion, ni * expansion
        self.convpath = torch.nn.Sequential(*([fastai_conv_layer(ni, nh, 3, stride), fastai_conv_layer(nh, nf, 3, zero_bn=True, act=False)]
                                              if expansion == 1 else
                                              [fastai_conv_layer(ni, nh, 1), fastai_conv_layer(nh, nh, 3, stride),
                                               fastai_conv_layer(nh, nf, 1, zero_bn=True, act=False)]))
        idpath = []
        if ni != nf:
            idpath.append(fastai_conv_layer(ni, nf, 1, act=False))
        if stride != 1:
            idpath.insert(0, torch.nn.AvgPool2d(stride, ceil_mode=True))
        self.idpath = torch.nn.Sequential(*idpath)

    def forward(self, x):
        return F.relu(self.convpath(x) + self.idpath(x))


def fastai_create_head(nf, n_out, ps=0.5):
    """fastai's `create_head(nf, n_out, ps=ps)` with its defaults (fastai/vision/learner.py and `LinBnDrop` in
    fastai/layers.py): concat pooling, flatten, then [BatchNorm1d, Dropout (if p), Linear(bias=False)] twice, ReLU
    between, and `vision_learner`'s `apply_init(head, kaiming_normal_)`."""

    class ConcatPool(torch.nn.Module):
        def forward(self, x):
            return torch.cat([F.adaptive_max_pool2d(x, 1), F.adaptive_avg_pool2d(x, 1)], 1)

    layers = [ConcatPool(), torch.nn.Flatten()]
    for ni, no, p, act in [(2 * nf, 512, ps / 2, True), (512, n_out, ps, False)]:
        # fastai's BatchNorm(ni, ndim=1) starts its bias at 1e-3; the fixture loads its own initial values into tiny's
        # head, so the plain BatchNorm1d here serves as well (tiny's start is tested by itself).
        layers.append(torch.nn.BatchNorm1d(ni))
        if p != 0:
            layers.append(torch.nn.Dropout(p))
        lin = torch.nn.Linear(ni, no, bias=False)
        torch.nn.init.kaiming_normal_(lin.weight)
        layers.append(lin)
        if act:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def fastai_xresnet(expansion, layers, n_out=1000, p=0.0):
    """fastai's `XResNet` (fastai/vision/models/xresnet.py) as the nn.Sequential it is, with `init_cnn`."""
    stem = [fastai_conv_layer(3, 32, 3, 2), fastai_conv_layer(32, 32), fastai_conv_layer(32, 64)]
    szs = [64 // expansion, 64, 128, 256, 512]
    blocks = [torch.nn.Sequential(*[FastaiResBlock(expansion, szs[i] if j == 0 else szs[i + 1], szs[i + 1],
                                                   stride=(1 if i == 0 else 2) if j == 0 else 1) for j in range(n)])
              for i, n in enumerate(layers)]
    m = torch.nn.Sequential(*stem, torch.nn.MaxPool2d(3, 2, 1), *blocks, torch.nn.AdaptiveAvgPool2d(1),
                            torch.nn.Flatten(), torch.nn.Dropout(p), torch.nn.Linear(szs[-1] * expansion, n_out))

    def init_cnn(mod):
        if getattr(mod, "bias", None) is not None:
            torch.nn.init.constant_(mod.bias, 0)
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(mod.weight)
        for child in mod.children():
            init_cnn(child)

    init_cnn(m)
    return m

def zoo():
    """torchvision's resnet34 and resnet50 and fastai's xresnet18/34/50 (`fastai_xresnet`) from hashed weights (`hashed_state`, which tiny's test rebuilds): their
    state_dict names and shapes in order, and eval logits on a hashed batch of two 64 px images, with PyTorch's own
    float32 distance from float64 for the note. And Dropout: PyTorch's mask semantics on one seeded draw."""
    import torchvision

    w = Writer()
    xresnets = {"xresnet18": (1, [2, 2, 2, 2]), "xresnet34": (1, [3, 4, 6, 3]), "xresnet50": (4, [3, 4, 6, 3])}
    for name in ["resnet34", "resnet50", "xresnet18", "xresnet34", "xresnet50"]:
        if name in xresnets:
            m = fastai_xresnet(*xresnets[name], n_out=10)
        else:
            m = getattr(torchvision.models, name)(num_classes=10)
        m.load_state_dict(hashed_state(m))
        m.eval()
        salt = f"zoo.{name}.input"
        x = hashed_uniform(salt, (2, 3, 64, 64))
        with torch.no_grad():
            logits = m(x)
            exact = m.double()(x.double())
        own = ((logits.double() - exact).abs().max() / exact.abs().max()).item()
        print(f"{name}: float32 logits {own:.1e} from float64 (of the largest)")
        w.put(f"{name}.eval_logits", logits)
        keys = [[k, list(v.shape)] for k, v in m.state_dict().items()]
        w.cases.append(dict(name=name, op="model", params=dict(keys=keys, input=salt, float32_vs_float64=own),
                            views=[], grads=[], outputs=1, rtol=2e-5))
    # fastai's vision_learner model for resnet18 (create_body cut at -2, create_head(512, 10)) from hashed weights.
    rn = torchvision.models.resnet18(num_classes=10)
    m = torch.nn.Sequential(torch.nn.Sequential(*list(rn.children())[:-2]), fastai_create_head(512, 10))
    m.load_state_dict(hashed_state(m))
    m.eval()
    salt = "zoo.vision_resnet18.input"
    with torch.no_grad():
        w.put("vision_resnet18.eval_logits", m(hashed_uniform(salt, (2, 3, 64, 64))))
    keys = [[k, list(v.shape)] for k, v in m.state_dict().items()]
    w.cases.append(dict(name="vision_resnet18", op="model", params=dict(keys=keys, input=salt), views=[], grads=[],
                        outputs=1, rtol=2e-5))
    # The head alone in training, without Dropout (ps=0, so fastai leaves it out): batch statistics in both
    # BatchNorm1d, concat pooling's gradients, the bias-free Linear layers; one step of SGD moves the running stats.
    torch.manual_seed(1)
    head = fastai_create_head(8, 5, ps=0.0)
    x = torch.randn(6, 8, 3, 3, requires_grad=True)
    cot = torch.randn(6, 5)
    for k, t in head.state_dict().items():
        w.put(f"head.init.{k}", t.float())
    out = head(x)
    (out * cot).sum().backward()
    w.put("head.x", x)
    w.put("head.cot", cot)
    w.put("head.out", out)
    w.put("head.grad_x", x.grad)
    for k, p_ in head.named_parameters():
        w.put(f"head.grad.{k}", p_.grad)
    for k, t in head.state_dict().items():
        if "running" in k:
            w.put(f"head.after.{k}", t)
    w.cases.append(dict(name="head", op="create_head", params=dict(nf=8, n_out=5, ps=0.0), views=[], grads=[True],
                        outputs=1, rtol=1e-5))
    # Dropout in training: each element zeroed with probability p, the rest scaled by 1 / (1 - p); the gradient
    # of sum(y * cot) is cot where kept, scaled alike. x has no zeros, so y's zeros are exactly the dropped ones.
    torch.manual_seed(0)
    p = 0.3
    x = (torch.rand(64, 48) + 0.5) * torch.sign(torch.randn(64, 48))
    x.requires_grad_()
    y = F.dropout(x, p, training=True)
    cot = torch.randn(64, 48)
    (y * cot).sum().backward()
    for k, t in dict(x=x, y=y, cot=cot, grad=x.grad, eval=F.dropout(x, p, training=False)).items():
        w.put(f"dropout.{k}", t)
    w.cases.append(dict(name="dropout", op="dropout", params=dict(p=p), views=[], grads=[True], outputs=1, rtol=0,
                        note="tiny's own mask: zeros where it drops, x * scale where not, with PyTorch's scale"))
    w.save(ROOT / "crates/tiny-nn/tests/fixtures/zoo.safetensors")


if __name__ == "__main__":
    import sys

    parts = sys.argv[1:] or ["ops", "nn", "optim", "inputs", "label_smoothing", "warp", "autocast", "autocast_models",
                             "zoo", "multi_label", "fused"]
    for part in parts:
        {"ops": ops, "nn": nn, "optim": optim, "inputs": inputs, "label_smoothing": label_smoothing,
         "warp": warp, "autocast": autocast, "autocast_models": autocast_models, "zoo": zoo,
         "multi_label": multi_label, "fused": fused}[part]()
