"""A minimal Hugging Face-style Llama forward in plain PyTorch, independent of stlm and of transformers.

It is written the way transformers' modeling_llama.py computes LlamaForCausalLM: rotate_half RoPE (dim i
paired with i + head_dim/2), grouped-query attention by repeating each kv head for its group of query
heads, RMSNorm computed in float32, SwiGLU MLP, and the embedding as the output head when
tie_word_embeddings is true. Weights come from config.json + model.safetensors, whose header is parsed
here with struct and json (no safetensors package).

  python3 torch_llama.py MODEL_DIR --ids 1,2,3        (or --ids-file ids.json with a JSON list)
                         [--dtype float32|float64]

Prints one JSON line: {"shape": [T, vocab], "logits": [[...], ...]} for every position.
"""
import argparse
import json
import struct
import sys

import numpy as np
import torch

NUMPY_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def read_safetensors(path):
    """name -> float32 torch tensor, from the file's header and data (F32, F16, BF16)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    data = raw[8 + n :]
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        chunk = data[begin:end]
        if info["dtype"] == "BF16":
            # numpy has no bfloat16: a bf16 is the top half of an f32.
            bits = np.frombuffer(chunk, dtype="<u2").astype(np.uint32) << 16
            values = bits.view(np.float32)
        else:
            values = np.frombuffer(chunk, dtype=np.dtype(NUMPY_DTYPES[info["dtype"]]).newbyteorder("<"))
        tensors[name] = torch.from_numpy(values.astype(np.float32).reshape(info["shape"]))
    return tensors


def rms_norm(x, weight, eps):
    # As transformers' LlamaRMSNorm: the statistics in float32, then back to the input dtype.
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_cos_sin(positions, head_dim, theta, dtype):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    freqs = torch.outer(positions.to(torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)  # [T, head_dim]: frequency k at dims k and k + head_dim/2
    return emb.cos().to(dtype), emb.sin().to(dtype)


def attention(h, w, layer, cfg, cos, sin):
    t = h.shape[0]
    n_heads, n_kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    hd = cfg["hidden_size"] // n_heads
    p = f"model.layers.{layer}.self_attn."
    q = (h @ w[p + "q_proj.weight"].T).view(t, n_heads, hd).transpose(0, 1)  # [H, T, hd]
    k = (h @ w[p + "k_proj.weight"].T).view(t, n_kv, hd).transpose(0, 1)  # [KV, T, hd]
    v = (h @ w[p + "v_proj.weight"].T).view(t, n_kv, hd).transpose(0, 1)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    # Grouped-query attention: query head j reads kv head j // (H / KV).
    k = k.repeat_interleave(n_heads // n_kv, dim=0)
    v = v.repeat_interleave(n_heads // n_kv, dim=0)
    scores = (q @ k.transpose(1, 2)) / (hd**0.5)  # [H, T, T]
    causal = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(causal, float("-inf"))
    probs = torch.softmax(scores.to(torch.float32), dim=-1).to(q.dtype)
    out = (probs @ v).transpose(0, 1).reshape(t, n_heads * hd)  # [T, d]
    return out @ w[p + "o_proj.weight"].T


def mlp(h, w, layer):
    p = f"model.layers.{layer}.mlp."
    gate = h @ w[p + "gate_proj.weight"].T
    up = h @ w[p + "up_proj.weight"].T
    return (torch.nn.functional.silu(gate) * up) @ w[p + "down_proj.weight"].T


def forward(ids, w, cfg):
    """Logits [T, vocab] for token ids [T] (one sequence, positions 0..T-1)."""
    eps = cfg.get("rms_norm_eps", 1e-6)
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    cos, sin = rope_cos_sin(torch.arange(len(ids)), hd, cfg.get("rope_theta", 10000.0), w["model.embed_tokens.weight"].dtype)
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        x = x + attention(rms_norm(x, w[p + "input_layernorm.weight"], eps), w, layer, cfg, cos, sin)
        x = x + mlp(rms_norm(x, w[p + "post_attention_layernorm.weight"], eps), w, layer)
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else w["lm_head.weight"]
    return x @ head.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--ids", help="comma-separated token ids")
    ap.add_argument("--ids-file", help="a JSON file holding a list of token ids")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args()
    if args.ids_file:
        with open(args.ids_file) as f:
            ids = json.load(f)
    elif args.ids:
        ids = [int(s) for s in args.ids.split(",")]
    else:
        sys.exit("give --ids or --ids-file")
    with open(f"{args.model_dir}/config.json") as f:
        cfg = json.load(f)
    if cfg.get("rope_scaling") or cfg.get("hidden_act", "silu") != "silu":
        sys.exit("this reference computes plain RoPE and SiLU only")
    dtype = getattr(torch, args.dtype)
    w = {k: v.to(dtype) for k, v in read_safetensors(f"{args.model_dir}/model.safetensors").items()}
    torch.set_num_threads(1)
    with torch.no_grad():
        logits = forward(ids, w, cfg)
    print(json.dumps({"shape": list(logits.shape), "logits": logits.to(torch.float64).tolist()}))


if __name__ == "__main__":
    main()
