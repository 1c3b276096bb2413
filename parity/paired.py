#!/usr/bin/env python3
"""The PyTorch reference's training run, fed tiny's exact batch order: a paired comparison.

    python parity/paired.py --data DIR --init W.safetensors --seed S [--epochs N] [--onecycle] [--lr F]

Runs `ch19_reference.py`'s pipeline (its Dataset, collate, simple_cnn, cross_entropy, SGD, Learner,
TrackResults and OneCycle, imported from --reference) from the initial weights W under ImageNet
statistics, with one change: each epoch's training order is the permutation tiny's DataLoader draws
for the same seed and epoch (tiny-data's SplitMix64 Fisher-Yates, re-implemented below). Run
`train --data DIR --init W --stats imagenet --seed S` beside it: the two then see the same weights,
the same normalisation and the same batches, so whatever differs between their figures is computation
(or input decoding), not the seed-to-seed noise of two different shuffles.

Prints one JSON line: the per-phase history and the final validation loss and accuracy.
"""
import argparse
import json
import sys
from pathlib import Path

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
SHUFFLE_TAG = 0x0053_4855_4646_4C45  # tiny-data/src/loader.rs


def splitmix64(x):
    z = (x + GOLDEN) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def mix(words):
    acc = 0x243F6A8885A308D3
    for w in words:
        acc = splitmix64(acc ^ splitmix64(w))
    return acc


def tiny_order(n, seed, epoch):
    """tiny's `DataLoader::order(epoch)` with shuffling on: `Rng::from_parts([seed, epoch, TAG]).shuffle`."""
    state = mix([seed, epoch, SHUFFLE_TAG])
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        r = splitmix64(state)  # Rng::next_u64: advance the state, then mix it
        state = (state + GOLDEN) & M64
        j = (r * (i + 1)) >> 64  # Rng::below, Lemire's multiply-shift
        order[i], order[j] = order[j], order[i]
    return order


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "reference")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--init", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--onecycle", action="store_true")
    ap.add_argument("--bs", type=int, default=128)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    sys.path.insert(0, str(a.reference))
    import torch
    from safetensors.torch import load_file

    import ch19_reference as ref

    if a.threads:
        torch.set_num_threads(a.threads)

    class TinyOrderLoader(ref.DataLoader):
        """The reference's DataLoader (torch DataLoader over collated chunks) in tiny's order."""

        def __init__(self, ds, bs, shuffle, seed):
            super().__init__(ds, bs=bs, shuffle=shuffle, n_workers=a.workers, kind="torch")
            self.seed, self.epoch = seed, 0

        def __iter__(self):
            n = len(self.ds)
            idxs = tiny_order(n, self.seed, self.epoch) if self.shuffle else list(range(n))
            self.epoch += 1
            chunks = [idxs[i:i + self.bs] for i in range(0, n, self.bs)]
            dl = torch.utils.data.DataLoader(ref._ChunkDS(self.ds, chunks), batch_size=None, shuffle=False,
                                             num_workers=self.n_workers, worker_init_fn=lambda _: ref._worker_init())
            yield from dl

    torch.manual_seed(a.seed)
    files = ref.get_image_files(a.data)
    lbls = sorted({p.parent.name for p in files})
    v2i = {v: i for i, v in enumerate(lbls)}
    train = [p for p in files if p.parent.parent.name == "train"]
    valid = [p for p in files if p.parent.parent.name in ("val", "valid")]
    dls = ref.DataLoaders(TinyOrderLoader(ref.Dataset(train, v2i, a.size), a.bs, True, a.seed),
                          TinyOrderLoader(ref.Dataset(valid, v2i, a.size), 2 * a.bs, False, a.seed))
    stats = [torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])]
    norm = ref.Normalize(stats)
    track = ref.TrackResults()
    cbs = [ref.SetupLearnerCB(lambda x: norm(x).permute((0, 3, 1, 2))), track]
    if a.onecycle:
        cbs.append(ref.OneCycle(a.lr))
    model = ref.simple_cnn(len(lbls))
    model.load_state_dict(load_file(str(a.init)))
    learn = ref.Learner(model, dls, ref.cross_entropy, lr=a.lr, cbs=cbs)
    learn.fit(a.epochs)
    last = [r for r in track.history if not r["train"]][-1]
    print(json.dumps(dict(mode="paired", seed=a.seed, epochs=a.epochs, lr=a.lr, onecycle=a.onecycle,
                          init=str(a.init), history=track.history, final_valid_loss=last["loss"],
                          final_valid_acc=last["acc"])))


if __name__ == "__main__":
    main()
