"""Peak memory of PyTorch training the anchor's byte-level Llama (../shared/anchors/torch/model.py) at any size.
Usage: torch_train_memory.py D LAYERS HEADS MLP CTX BATCH STEPS THREADS [MICRO]
Runs STEPS AdamW steps (as the anchor's bench_train.py: betas .9/.95, wd .1 on matrices) of BATCH windows of
CTX bytes from $ANCHOR_TRAIN, as micro-batches of MICRO windows (default BATCH) with gradients accumulated,
and prints one JSON line: peak RSS (ru_maxrss), seconds per step, losses. Run by bench/train-memory.ts."""
import json, os, resource, sys, time
sys.path.insert(0, os.environ["ANCHOR_DIR"])
import numpy as np, torch
from model import ByteLlama, n_params, set_threads

d, layers, heads, mlp, ctx, batch, steps, threads = (int(a) for a in sys.argv[1:9])
micro = int(sys.argv[9]) if len(sys.argv) > 9 else batch
set_threads(threads)
torch.manual_seed(0)
model = ByteLlama(d, layers, heads, mlp, ctx).train()
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=6e-4, betas=(0.9, 0.95))
data = torch.from_numpy(np.fromfile(os.environ["ANCHOR_TRAIN"], dtype=np.uint8).astype(np.int64))
g = torch.Generator().manual_seed(0)
times, losses = [], []
for s in range(steps):
    ix = torch.randint(0, len(data) - ctx - 1, (batch,), generator=g)
    x = torch.stack([data[i:i + ctx] for i in ix]); y = torch.stack([data[i + 1:i + ctx + 1] for i in ix])
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for c in range(0, batch, micro):
        loss = model(x[c:c + micro], y[c:c + micro]) * (micro / batch)
        loss.backward()
        total += loss.item()
    opt.step()
    times.append(time.perf_counter() - t0); losses.append(total)
    print(f"  torch step {s} {times[-1]:.1f} s loss {total:.4f} peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB", file=sys.stderr, flush=True)
print(json.dumps(dict(params=n_params(model), batch=batch, micro=micro, ctx=ctx, threads=threads, step_s=times, losses=losses,
                      peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, torch=torch.__version__)))
