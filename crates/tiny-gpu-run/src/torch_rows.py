"""PyTorch's side of the benchmark table, in one process: bench_gpu.py's bench() for each row of a JSON file.

usage: python torch_rows.py REFERENCE_DIR ROWS_JSON
Prints a JSON line about torch and the GPU, then one line per row: bench()'s own line with "config" added, or
{"config": ..., "error": ...} when the row failed. Exits 3 when torch or its GPU is not there (the run records
a skip), 1 when a row failed, 0 otherwise.
"""
import contextlib, io, json, sys, traceback

sys.path.insert(0, sys.argv[1])
try:
    import torch
except Exception as e:  # no torch in this interpreter
    print(f"no PyTorch: {type(e).__name__}: {e}", flush=True)
    sys.exit(3)
available = torch.cuda.is_available()
print(json.dumps(dict(torch=torch.__version__, cuda=torch.version.cuda, available=available,
                      gpu=torch.cuda.get_device_name(0) if available else None)), flush=True)
if not available:
    print("torch.cuda.is_available() is False", flush=True)
    sys.exit(3)
torch.backends.cudnn.benchmark = True  # as bench_gpu.py does when it runs its own list
from bench_gpu import bench

failed = 0
for row in json.load(open(sys.argv[2])):
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            bench(row["model"], row["bs"], row["size"], row["tf32"], steps=row["steps"], warmup=row["warmup"],
                  amp=row["amp"], channels_last=row["channels_last"])
        result = json.loads(printed.getvalue().strip().splitlines()[-1])
    except Exception as e:
        failed += 1
        traceback.print_exc()
        result = dict(error=f"{type(e).__name__}: {e}")
    result["config"] = row["config"]
    print(json.dumps(result), flush=True)
sys.exit(1 if failed else 0)
