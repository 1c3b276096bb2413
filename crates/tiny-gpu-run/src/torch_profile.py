"""PyTorch's GPU time per kernel for one training step, beside tiny's from ncu.

usage: python torch_profile.py REFERENCE_DIR MODEL BS SIZE
The step is bench_gpu.py's (the reference's model, cross entropy and SGD, TF32 allowed), run three times to warm
up and then once under torch.profiler. Prints the profiler's table, then one JSON line
{"kernels": [{"name", "calls", "total_us"}, ...], "total_us": ...}. Exits 3 without torch or its GPU.
"""
import json, sys

sys.path.insert(0, sys.argv[1])
try:
    import torch
    from torch.profiler import ProfilerActivity, profile
except Exception as e:
    print(f"no PyTorch: {type(e).__name__}: {e}", flush=True)
    sys.exit(3)
if not torch.cuda.is_available():
    print("torch.cuda.is_available() is False", flush=True)
    sys.exit(3)
from ch19_reference import SGD, cross_entropy, get_model

model_name, bs, size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.backends.cudnn.benchmark = True
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
torch.manual_seed(0)
dev = torch.device("cuda")
model = get_model(model_name, 10).to(dev).train()
x = torch.randn(bs, 3, size, size, device=dev)
y = torch.randint(0, 10, (bs,), device=dev)
opt = SGD(model.parameters(), 0.1)


def step():
    loss = cross_entropy(model(x), y)
    loss.backward()
    opt.step()


for _ in range(3):
    step()
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    step()
    torch.cuda.synchronize()
events = prof.key_averages()


def device_us(e):
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(e, name):
            return float(getattr(e, name))
    return 0.0


for sort_by in ("self_device_time_total", "self_cuda_time_total"):
    try:
        print(events.table(sort_by=sort_by, row_limit=25), flush=True)
        break
    except Exception:
        continue
rows = sorted((dict(name=e.key, calls=int(e.count), total_us=device_us(e)) for e in events if device_us(e) > 0),
              key=lambda r: -r["total_us"])
print(json.dumps(dict(model=model_name, bs=bs, size=size, tf32=True, kernels=rows,
                      total_us=sum(r["total_us"] for r in rows))), flush=True)
