"""Continue training an stlm model with PyTorch, data-parallel (DDP) over processes, and hand it back.

stlm exports a model as a Hugging Face Llama directory (`stlm convert model.gguf hf/`: config.json,
model.safetensors, tokenizer files). This script trains it further with `torchrun` and writes the same
kind of directory, which stlm opens again (`stlm generate/eval/quantize/serve --model out/`).

  torchrun --nproc_per_node 2 continue_ddp.py --model hf/ --data input.txt --out hf-cont/ --steps 50
  python3 continue_ddp.py --model hf-cont/ --logits 84,101,108      (prints the logits of those ids as JSON)

Plain PyTorch only (1.13 or newer; no transformers or safetensors package): the model below is the
Llama forward written as transformers' modeling_llama.py computes it (rotate_half RoPE, grouped-query
attention, RMSNorm, SwiGLU, optionally tied embeddings). Data: stlm's byte tokenizer (token id = byte),
the first 90% of the file trains and the rest validates, as `stlm train` splits it, and validation bits
per byte are computed as `stlm eval bpb` does (non-overlapping windows of --ctx), so the numbers on
both sides of the hand-off compare directly. Gradients are averaged over processes by DDP (gloo: CPU).
"""
import argparse
import json
import math
import os
import shutil
import struct

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel


# ---- safetensors (the format is an 8-byte header length, a JSON header, then raw little-endian data) ----

def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    kinds = {"F32": np.float32, "F16": np.float16}
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        chunk = raw[8 + n + begin : 8 + n + end]
        if info["dtype"] == "BF16":  # numpy has no bfloat16: a bf16 is the top half of an f32
            values = (np.frombuffer(chunk, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            values = np.frombuffer(chunk, np.dtype(kinds[info["dtype"]]).newbyteorder("<"))
        out[name] = torch.from_numpy(values.astype(np.float32).reshape(info["shape"]))
    return out


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name, t in tensors.items():
        size = t.numel() * 4
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for t in tensors.values():
            f.write(t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes())
    os.replace(path + ".tmp", path)


# ---- the model: parameter names are Hugging Face's, so the state dict is the checkpoint ----

class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg.get("num_key_value_heads", self.heads)
        self.head_dim = d // self.heads
        self.q_proj = nn.Linear(d, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, d, bias=False)

    def forward(self, x, cos, sin, causal):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, KV, T, hd)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = self.heads // self.kv_heads  # query head j reads kv head j // group
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)  # (B, H, T, T)
        probs = torch.softmax(scores.masked_fill(causal, float("-inf")), dim=-1)
        return self.o_proj((probs @ v).transpose(1, 2).reshape(b, t, -1))  # (B, T, d)


class Mlp(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, h = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(d, h, bias=False)
        self.up_proj = nn.Linear(d, h, bias=False)
        self.down_proj = nn.Linear(h, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        eps = cfg.get("rms_norm_eps", 1e-6)
        self.input_layernorm = RMSNorm(cfg["hidden_size"], eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], eps)
        self.mlp = Mlp(cfg)

    def forward(self, x, cos, sin, causal):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, causal)
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg["num_hidden_layers"]))
        self.norm = RMSNorm(cfg["hidden_size"], cfg.get("rms_norm_eps", 1e-6))


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        if cfg.get("rope_scaling") or cfg.get("hidden_act", "silu") != "silu":
            raise SystemExit("continue_ddp.py: this model computes plain RoPE and SiLU only")
        self.cfg = cfg
        self.model = Body(cfg)
        self.tied = cfg.get("tie_word_embeddings", False)
        if not self.tied:
            self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
        inv_freq = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, ids):  # ids (B, T) -> logits (B, T, vocab)
        t = ids.shape[1]
        freqs = torch.outer(torch.arange(t, dtype=torch.float64), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)  # (T, hd): frequency k at dims k and k + hd/2
        cos, sin = emb.cos().float(), emb.sin().float()
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin, causal)
        x = self.model.norm(x)
        return x @ (self.model.embed_tokens.weight if self.tied else self.lm_head.weight).T

    def checkpoint(self):
        """The state dict under Hugging Face's names (a tied head is the embedding, stored once)."""
        return {k: v for k, v in self.state_dict().items() if not (self.tied and k == "lm_head.weight")}


def load(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    model = LlamaForCausalLM(cfg)
    weights = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not (model.tied and k == "lm_head.weight")]
    if missing or unexpected:
        raise SystemExit(f"continue_ddp.py: {model_dir}/model.safetensors: missing {missing}, unexpected {unexpected}")
    return model


# ---- data: stlm's byte tokenizer and split ----

def byte_tokens(path):
    data = torch.from_numpy(np.fromfile(path, dtype=np.uint8).astype(np.int64))
    cut = int(len(data) * 0.9)
    return data[:cut], data[cut:]


@torch.no_grad()
def bits_per_byte(model, tokens, ctx, batch=8):
    """Mean next-token cross-entropy over the non-overlapping windows of `tokens`, in bits (one byte per token)."""
    windows = (len(tokens) - 1) // ctx
    nats = 0.0
    for w0 in range(0, windows, batch):
        starts = range(w0 * ctx, min(windows, w0 + batch) * ctx, ctx)
        ids = torch.stack([tokens[s : s + ctx] for s in starts])
        targets = torch.stack([tokens[s + 1 : s + ctx + 1] for s in starts])
        nats += F.cross_entropy(model(ids).flatten(0, 1), targets.flatten(), reduction="sum").item()
    return nats / (windows * ctx) / math.log(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a Hugging Face Llama directory (stlm convert model.gguf DIR)")
    ap.add_argument("--logits", help="comma-separated token ids: print the model's logits for them as JSON and exit")
    ap.add_argument("--data", help="the training text (byte tokens; 90%% train, 10%% validation)")
    ap.add_argument("--out", help="the directory to write the trained model to")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=8, help="windows per process and step")
    ap.add_argument("--ctx", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log", help="append one JSON line per step (and the validation before and after) to this file")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one core per process: the processes are the parallelism

    if args.logits:
        model = load(args.model).eval()
        with torch.no_grad():
            logits = model(torch.tensor([[int(s) for s in args.logits.split(",")]]))[0]
        print(json.dumps({"shape": list(logits.shape), "logits": logits.double().tolist()}))
        return
    if not (args.data and args.out):
        ap.error("--data and --out are needed to train")

    distributed = "WORLD_SIZE" in os.environ  # started by torchrun
    if distributed:
        dist.init_process_group("gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    torch.manual_seed(args.seed)  # the same model on every rank (it is loaded anyway)
    model = load(args.model)
    if model.cfg["vocab_size"] < 256:
        raise SystemExit("continue_ddp.py: the data are byte tokens; the model's vocabulary has fewer than 256")
    train, val = byte_tokens(args.data)
    ddp = DistributedDataParallel(model) if distributed else model
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": matrices, "weight_decay": args.weight_decay}, {"params": others, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    rng = torch.Generator().manual_seed(args.seed * 1000 + rank)  # each process draws its own windows
    log = open(args.log, "a") if args.log and rank == 0 else None

    def record(entry):
        if log:
            log.write(json.dumps(entry) + "\n")
            log.flush()
        if rank == 0:
            print(" | ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items()), flush=True)

    if rank == 0:
        record({"phase": "start", "val_bpb": bits_per_byte(model.eval(), val, args.ctx)})
    for step in range(1, args.steps + 1):
        model.train()
        starts = torch.randint(0, len(train) - args.ctx, (args.batch,), generator=rng)
        ids = torch.stack([train[s : s + args.ctx] for s in starts])
        targets = torch.stack([train[s + 1 : s + args.ctx + 1] for s in starts])
        loss = F.cross_entropy(ddp(ids).flatten(0, 1), targets.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()  # DDP averages the gradients over the processes here
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        mean = loss.detach().clone()
        if distributed:
            dist.all_reduce(mean)
            mean /= world
        record({"phase": "train", "step": step, "loss": mean.item()})
    if rank == 0:
        record({"phase": "end", "val_bpb": bits_per_byte(model.eval(), val, args.ctx)})
        os.makedirs(args.out, exist_ok=True)
        for name in os.listdir(args.model):  # config and tokenizer files as they came
            if name != "model.safetensors" and os.path.isfile(os.path.join(args.model, name)):
                shutil.copyfile(os.path.join(args.model, name), os.path.join(args.out, name))
        write_safetensors(os.path.join(args.out, "model.safetensors"), model.checkpoint())
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
