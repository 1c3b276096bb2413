#!/usr/bin/env python3
"""The accuracy gap, measured from the same weights: tiny against the PyTorch reference over many seeds.

    python parity/gap.py --data DIR --seeds 0-11 --epochs 1 [--onecycle] [--bf16] --out results.jsonl
    python parity/gap.py --summary results.jsonl

For each seed S it
  1. writes initial weights W_S with the reference's `parity_eval.py --seed S` (which also prints their
     validation loss under ImageNet statistics),
  2. runs `train --init W_S --stats imagenet --epochs 0`: tiny's validation loss of the same weights,
  3. trains tiny: `train --init W_S --stats imagenet --seed S --epochs N [--onecycle]`,
  4. trains the reference: `ch19_reference.py --init W_S --stats imagenet --seed S ...` (its own shuffle),
  5. and, with --paired, the reference again in tiny's batch order (`parity/paired.py`),
(with --bf16, steps 3 and 4 run in bf16 mixed precision on both sides; with --own-init, steps 1, 2 and 5 are skipped and each side starts from its own initialisation and the
first batch's statistics, as in the chapter),
and appends one JSON line per seed to --out. Build tiny first:
`cargo build --release -p tiny-learner --example train`.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def last_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def seeds_of(spec):
    if "-" in spec:
        lo, hi = spec.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in spec.split(",")]


def run_seed(a, seed, tmp):
    py = a.python
    w = Path(tmp) / f"w{seed}.safetensors"
    ref = a.reference
    tiny = str(a.tiny)
    if a.own_init:
        # The original comparison: each side its own initialisation and the first batch's statistics.
        common = ["--data", str(a.data), "--seed", str(seed), "--workers", str(a.workers)]
        init, tiny0 = dict(valid_loss=float("nan")), dict(valid_loss=float("nan"))
    else:
        init = last_json([py, str(ref / "parity_eval.py"), "--data", str(a.data), "--model", "simple_cnn",
                          "--seed", str(seed), "--out", str(w)])
        common = ["--data", str(a.data), "--init", str(w), "--stats", "imagenet", "--seed", str(seed),
                  "--workers", str(a.workers)]
        tiny0 = last_json([tiny, *common, "--epochs", "0"])
    sched = ["--onecycle"] if a.onecycle else []
    # Mixed precision on both sides: tiny's autocast and the reference's torch.autocast(bfloat16).
    t_amp, r_amp = (["--precision", "bf16"], ["--amp", "bf16"]) if a.bf16 else ([], [])
    t = last_json([tiny, *common, "--epochs", str(a.epochs), "--lr", str(a.lr), *sched, *t_amp])
    r = last_json([py, str(ref / "ch19_reference.py"), *common, "--loader", "torch", "--epochs", str(a.epochs),
                   "--lr", str(a.lr), *sched, *r_amp])
    row = dict(seed=seed, epochs=a.epochs, onecycle=a.onecycle, lr=a.lr, bf16=a.bf16,
               init_valid_loss_torch=init["valid_loss"], init_valid_loss_tiny=tiny0["valid_loss"],
               tiny_train_loss=t["train_loss"], tiny_valid_loss=t["valid_loss"], tiny_valid_acc=t["valid_acc"],
               ref_train_loss=[h for h in r["history"] if h["train"]][-1]["loss"],
               ref_valid_loss=r["final_valid_loss"], ref_valid_acc=r["final_valid_acc"])
    if a.paired and not a.own_init:
        p = last_json([py, str(ROOT / "parity" / "paired.py"), "--reference", str(ref), "--data", str(a.data),
                       "--init", str(w), "--seed", str(seed), "--epochs", str(a.epochs), "--lr", str(a.lr),
                       "--workers", str(a.workers), *sched])
        row.update(paired_train_loss=[h for h in p["history"] if h["train"]][-1]["loss"],
                   paired_valid_loss=p["final_valid_loss"], paired_valid_acc=p["final_valid_acc"])
    return row


def summary(rows):
    def stat(key):
        v = [r[key] for r in rows if key in r and r[key] == r[key]]
        if not v:
            return None
        return dict(mean=statistics.fmean(v), sd=statistics.stdev(v) if len(v) > 1 else 0.0, min=min(v), max=max(v))

    keys = [k for k in rows[0] if k not in ("seed", "epochs", "onecycle", "lr", "bf16")]
    out = {k: stat(k) for k in keys}
    d = [r["tiny_valid_acc"] - r["ref_valid_acc"] for r in rows]
    out["acc_gap_tiny_minus_ref"] = dict(mean=statistics.fmean(d), sd=statistics.stdev(d) if len(d) > 1 else 0.0,
                                         se=(statistics.stdev(d) / len(d) ** 0.5) if len(d) > 1 else 0.0,
                                         tiny_lower_on=sum(x < 0 for x in d), of=len(d))
    if "paired_valid_acc" in rows[0]:
        p = [r["tiny_valid_acc"] - r["paired_valid_acc"] for r in rows]
        out["acc_gap_tiny_minus_paired"] = dict(mean=statistics.fmean(p), max_abs=max(abs(x) for x in p))
        lp = [abs(r["tiny_valid_loss"] - r["paired_valid_loss"]) / r["paired_valid_loss"] for r in rows]
        out["valid_loss_rel_diff_paired"] = dict(mean=statistics.fmean(lp), max=max(lp))
    lr = [abs(r["init_valid_loss_tiny"] - r["init_valid_loss_torch"]) / r["init_valid_loss_torch"] for r in rows
          if r["init_valid_loss_torch"] == r["init_valid_loss_torch"]]
    if lr:
        out["init_valid_loss_rel_diff"] = dict(mean=statistics.fmean(lr), max=max(lr))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path)
    ap.add_argument("--seeds", default="0-11")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--onecycle", action="store_true")
    ap.add_argument("--paired", action="store_true", help="also run the reference in tiny's batch order")
    ap.add_argument("--own-init", action="store_true",
                    help="each side initialises itself and normalises with its first batch (no shared weights)")
    ap.add_argument("--bf16", action="store_true",
                    help="both sides in bf16 mixed precision: tiny's --precision bf16, the reference's --amp bf16")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--summary", type=Path, help="only summarise an earlier --out file")
    ap.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--tiny", type=Path, default=ROOT / "target" / "release" / "examples" / "train")
    a = ap.parse_args()
    if a.summary:
        rows = [json.loads(line) for line in a.summary.read_text().splitlines() if line.strip()]
        print(json.dumps(summary(rows), indent=1))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds_of(a.seeds):
            row = run_seed(a, seed, tmp)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    print(json.dumps(summary(rows), indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
