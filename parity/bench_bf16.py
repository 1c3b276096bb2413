#!/usr/bin/env python3
"""The bf16 speed benchmark behind the README's tables, in one command: tiny against PyTorch's fastest CPU path.

    cargo build --release -p tiny-nn --example bench_step
    python3 parity/bench_bf16.py [--runs 3] [--rows all] [--fp32] [--tiny-only] [--out results.jsonl]

For each row (simple_cnn bs128 64 px, resnet18 bs64 64 px and 128 px, on one and on two threads) it alternates
`bench_step --precision bf16` and `ch19_reference.py --bench-step --amp bf16 --channels-last` with the same model,
batch, size and threads, `--runs` times each, and prints a markdown table of every run, the medians, PyTorch's median
over tiny's (the target is at least 1.3x) and each side's peak resident memory (the child's own `ru_maxrss`). With
`--fp32`, one run of each side in fp32 is added per row. The CPU's model and bf16 flags head the table, since the
figures hold only for that CPU. With `--tiny-only`, PyTorch is not run (a machine without it). Each
`--variant VAR=VALUE` (e.g. `TINY_WINOGRAD=0`, `TINY_AMX=0`) adds a column of tiny bf16 runs under that environment
setting, alternated with the others, and its PyTorch / tiny ratio after the default's in the ratio cell: the way to
measure one of tiny's code paths against another on the machine at hand (the fp32 runs keep the default path).
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
REFERENCE = ROOT.parent / "shared" / "reference" / "ch19_reference.py"
BENCH_STEP = ROOT / "target" / "release" / "examples" / "bench_step"

# The rows, with the steps the README's tables use: (name, model, batch, size, steps, warmup).
ROWS = [
    ("simple_cnn bs128 64 px", "simple_cnn", 128, 64, 20, 3),
    ("resnet18 bs64 64 px", "resnet18", 64, 64, 6, 2),
    ("resnet18 bs64 128 px", "resnet18", 64, 128, 3, 1),
]
FLAGS = ["amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2", "fma"]


def cpu():
    """The CPU's model name, family and model numbers, and which of FLAGS it has (from /proc/cpuinfo)."""
    info, flags = {}, set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "cpu family", "model") and key not in info:
            info[key] = value
        elif key == "flags" and not flags:
            flags = set(value.split())
    return dict(name=info.get("model name", "?"), family=info.get("cpu family", "?"), model=info.get("model", "?"),
                flags=[f for f in FLAGS if f in flags])


def run_measured(cmd, env=None):
    """Runs `cmd`; returns its last JSON line and its peak resident memory in MiB, from `os.wait4`, which reports
    that child alone (stderr goes to a temporary file, so that neither pipe can fill while the other is read)."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                env=None if env is None else {**os.environ, **env})
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            sys.exit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{err.read()[-2000:]}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        sys.exit(f"{' '.join(map(str, cmd))} printed no JSON line:\n{out[-2000:]}")
    return json.loads(lines[-1]), usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def tiny(bench, model, bs, size, threads, steps, warmup, precision, env=None):
    cmd = [str(bench), "--model", model, "--bs", str(bs), "--size", str(size), "--threads", str(threads),
           "--precision", precision, "--steps", str(steps), "--warmup", str(warmup)]
    res, rss = run_measured(cmd, env)
    return res["ms_per_step"], rss


def torch_ref(reference, model, bs, size, threads, steps, warmup, amp):
    cmd = [sys.executable, str(reference), "--bench-step", "--model", model, "--bs", str(bs), "--size", str(size),
           "--threads", str(threads), "--steps", str(steps), "--warmup", str(warmup)]
    if amp:
        cmd += ["--amp", "bf16", "--channels-last"]
    res, rss = run_measured(cmd)
    return res["median_step_s"] * 1000, rss


def fmt(runs):
    """`a / b / c ms (median)`, or `a ms` for one run, with thousands separated as in the README's tables."""
    ms = lambda v: f"{v:,.1f}" if v < 100 else f"{v:,.0f}"
    if len(runs) == 1:
        return f"{ms(runs[0])} ms"
    return f"{' / '.join(ms(v) for v in runs)} ms ({ms(statistics.median(runs))})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="alternated runs of each side per row")
    ap.add_argument("--rows", default="all", help="all, or a comma-separated subset of: simple_cnn, r18-64, r18-128")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--fp32", action="store_true", help="add one fp32 run of each side per row")
    ap.add_argument("--tiny-only", action="store_true", help="do not run PyTorch")
    ap.add_argument("--bench-step", type=Path, default=BENCH_STEP, help="tiny's bench_step binary")
    ap.add_argument("--reference", type=Path, default=REFERENCE, help="ch19_reference.py")
    ap.add_argument("--out", type=Path, default=None, help="append one JSON line per row here")
    ap.add_argument("--variant", action="append", default=[], metavar="VAR=VALUE",
                    help="also run tiny bf16 with this environment setting (repeatable), e.g. TINY_WINOGRAD=0")
    a = ap.parse_args()
    variants = []
    for v in a.variant:
        var, eq, value = v.partition("=")
        if not eq or not var:
            ap.error(f"--variant {v!r}: expected VAR=VALUE")
        variants.append((v, {var: value}))
    keys = {"simple_cnn": 0, "r18-64": 1, "r18-128": 2}
    if a.rows == "all":
        rows = ROWS
    else:
        unknown = [r for r in a.rows.split(",") if r not in keys]
        if unknown:
            ap.error(f"unknown rows {unknown}; choose from {', '.join(keys)}")
        rows = [ROWS[keys[r]] for r in a.rows.split(",")]
    threads = [int(t) for t in a.threads.split(",")]
    if not a.bench_step.is_file():
        ap.error(f"{a.bench_step} not found: cargo build --release -p tiny-nn --example bench_step")
    if not a.tiny_only and not a.reference.is_file():
        ap.error(f"{a.reference} not found (or pass --tiny-only)")

    c = cpu()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"CPU: {c['name']} (family {c['family']} model {c['model']}); flags: {', '.join(c['flags']) or 'none'}; "
          f"tiny at {commit}; {a.runs} alternated runs each, medians\n")
    head = "| model, threads | tiny bf16 |" + "".join(f" tiny bf16, {v} |" for v, _ in variants)
    if not a.tiny_only:
        head += " PyTorch bf16 + channels_last | PyTorch / tiny |"
    head += " peak RSS tiny |" if a.tiny_only else " peak RSS tiny / PyTorch |"
    if a.fp32:
        head += " tiny fp32 |" + ("" if a.tiny_only else " PyTorch fp32 |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, model, bs, size, steps, warmup in rows:
        for t in threads:
            ours, theirs, rss_ours, rss_theirs = [], [], [], []
            others = [[] for _ in variants]
            for _ in range(a.runs):
                ms, rss = tiny(a.bench_step, model, bs, size, t, steps, warmup, "bf16")
                ours.append(ms)
                rss_ours.append(rss)
                for (_, env), runs in zip(variants, others):
                    runs.append(tiny(a.bench_step, model, bs, size, t, steps, warmup, "bf16", env)[0])
                if not a.tiny_only:
                    ms, rss = torch_ref(a.reference, model, bs, size, t, steps, warmup, True)
                    theirs.append(ms)
                    rss_theirs.append(rss)
            row = dict(row=name, threads=t, cpu=c, commit=commit, tiny_bf16_ms=ours,
                       tiny_rss_mib=statistics.median(rss_ours))
            line = f"| {name}, {t} | {fmt(ours)} |"
            for (v, _), runs in zip(variants, others):
                row.setdefault("variants", {})[v] = runs
                line += f" {fmt(runs)} |"
            if not a.tiny_only:
                ratio = statistics.median(theirs) / statistics.median(ours)
                row.update(torch_bf16_ms=theirs, ratio=ratio, torch_rss_mib=statistics.median(rss_theirs))
                for (v, _), runs in zip(variants, others):
                    row.setdefault("variant_ratios", {})[v] = statistics.median(theirs) / statistics.median(runs)
                extra = "".join(f"; {v}: {r:.2f}x" for v, r in row.get("variant_ratios", {}).items())
                line += f" {fmt(theirs)} | {ratio:.2f}x{'' if ratio >= 1.3 else ' (below 1.3x)'}{extra} |"
                line += f" {statistics.median(rss_ours):,.0f} / {statistics.median(rss_theirs):,.0f} MiB |"
            else:
                line += f" {statistics.median(rss_ours):,.0f} MiB |"
            if a.fp32:
                ms, _ = tiny(a.bench_step, model, bs, size, t, steps, warmup, "fp32")
                row["tiny_fp32_ms"] = ms
                line += f" {fmt([ms])} |"
                if not a.tiny_only:
                    ms, _ = torch_ref(a.reference, model, bs, size, t, steps, warmup, False)
                    row["torch_fp32_ms"] = ms
                    line += f" {fmt([ms])} |"
            print(line, flush=True)
            if a.out:
                with a.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
