#!/usr/bin/env python3
"""
Builds the tiny Hugging Face Llama checkpoints under test/fixtures/hf/ and records reference logits for them
in test/fixtures/hf/expected.json. Run by hand from the repository root (the outputs are committed):

    python3 test/fixtures-gen/make-hf-llama.py

Needs numpy; uses PyTorch too when it is installed (Debian: apt-get install python3-torch python3-numpy).
Nothing here uses stlm's code: the checkpoints are written the way Hugging Face tools publish them
(transformers' tensor names, config.json keys, safetensors bytes written by hand per the format's spec,
model.safetensors.index.json for shards), and the logits come from a float64 forward of transformers'
LlamaForCausalLM equations (modeling_llama.py: LlamaRMSNorm, rotate_half / apply_rotary_pos_emb, repeat_kv,
eager causal attention, SiLU-gated MLP), computed with numpy and, when torch is present, again with torch as
a second transcription that must agree. transformers itself is not packaged for Debian, so it is not used.

The reference runs on the weights as stored (after rounding to BF16 / F16), so a correct loader and a
correct float32 forward agree with it to ~1e-6 whatever the storage dtype.
"""
import json
import os
import struct
import sys

import numpy as np

try:
    import torch
except ImportError:  # numpy alone still produces the fixtures
    torch = None

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures', 'hf')

BASE = dict(vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, rope_theta=10000.0, rms_norm_eps=1e-5, max_position_embeddings=64)

# name: config overrides, storage dtype, how the embedding / head are stored, shards, extras.
#   head: 'untied' (both, different), 'lm_head_only', 'embed_only', 'both_equal', 'alias' (embed only,
#   safetensors metadata {"lm_head.weight": "model.embed_tokens.weight"} as safetensors' save_model writes).
CASES = {
    'untied-f32': dict(cfg=dict(num_key_value_heads=4, head_dim=4, tie_word_embeddings=False), dtype='F32', head='untied'),
    'gqa-sharded-f32': dict(cfg=dict(num_key_value_heads=1, rope_theta=500000.0, tie_word_embeddings=False), dtype='F32',
                            head='untied', shards=3),
    'tied-lm-head-only-f32': dict(cfg=dict(tie_word_embeddings=True), dtype='F32', head='lm_head_only'),
    'tied-bf16': dict(cfg=dict(vocab_size=259, tie_word_embeddings=True), dtype='BF16', head='embed_only', shards=2),
    'both-equal-f16': dict(cfg=dict(), dtype='F16', head='both_equal', inv_freq=True),
    'mistral-alias-f32': dict(cfg=dict(tie_word_embeddings=True, sliding_window=None, max_position_embeddings=128),
                              dtype='F32', head='alias', arch='MistralForCausalLM'),
}

IDS = [1, 7, 3, 30, 12, 5, 22]


def bf16_round(x):
    """float32 -> the bfloat16 bits (round to nearest even) and the float32 value they mean."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return bits, (bits.astype(np.uint32) << 16).view(np.float32)


def stored(x, dtype):
    """(bytes as stored, float32 values they decode to)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if dtype == 'F32':
        return x.astype('<f4').tobytes(), x
    if dtype == 'F16':
        h = x.astype('<f2')
        return h.tobytes(), h.astype(np.float32)
    bits, values = bf16_round(x)
    return bits.astype('<u2').tobytes(), values


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, dtype, shape, bytes). The header is padded with spaces to a multiple of 8."""
    header, offset = {}, 0
    if metadata:
        header['__metadata__'] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {'dtype': dtype, 'shape': list(shape), 'data_offsets': [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * (-len(text) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for _, _, _, data in tensors:
            f.write(data)


def make_weights(cfg, rng):
    """HF names -> float32 arrays; q/k scaled up so that attention is far from uniform (a RoPE error shows)."""
    d, v, f, hd = cfg['hidden_size'], cfg['vocab_size'], cfg['intermediate_size'], cfg['hidden_size'] // cfg['num_attention_heads']
    kv = cfg['num_key_value_heads'] * hd
    w = {'model.embed_tokens.weight': rng.standard_normal((v, d))}
    for l in range(cfg['num_hidden_layers']):
        p = f'model.layers.{l}.'
        w[p + 'input_layernorm.weight'] = 1 + 0.1 * rng.standard_normal(d)
        w[p + 'self_attn.q_proj.weight'] = rng.standard_normal((d, d)) * 2 / np.sqrt(d)
        w[p + 'self_attn.k_proj.weight'] = rng.standard_normal((kv, d)) * 2 / np.sqrt(d)
        w[p + 'self_attn.v_proj.weight'] = rng.standard_normal((kv, d)) / np.sqrt(d)
        w[p + 'self_attn.o_proj.weight'] = rng.standard_normal((d, d)) / np.sqrt(d)
        w[p + 'post_attention_layernorm.weight'] = 1 + 0.1 * rng.standard_normal(d)
        w[p + 'mlp.gate_proj.weight'] = rng.standard_normal((f, d)) / np.sqrt(d)
        w[p + 'mlp.up_proj.weight'] = rng.standard_normal((f, d)) / np.sqrt(d)
        w[p + 'mlp.down_proj.weight'] = rng.standard_normal((d, f)) / np.sqrt(f)
    w['model.norm.weight'] = 1 + 0.1 * rng.standard_normal(d)
    w['lm_head.weight'] = rng.standard_normal((v, d)) / np.sqrt(d)
    return {k: x.astype(np.float32) for k, x in w.items()}


# ------------------------------------------------------------------------------------------------------
# Reference forwards (float64) of transformers' LlamaForCausalLM, on HF-named weights in HF's row order.

def rope_cos_sin(cfg, T):
    hd = cfg['hidden_size'] // cfg['num_attention_heads']
    inv_freq = 1.0 / (cfg['rope_theta'] ** (np.arange(0, hd, 2, dtype=np.float64) / hd))  # LlamaRotaryEmbedding
    freqs = np.outer(np.arange(T, dtype=np.float64), inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb), np.sin(emb)


def numpy_forward(cfg, w, ids, tied):
    w = {k: x.astype(np.float64) for k, x in w.items()}
    H, KV = cfg['num_attention_heads'], cfg['num_key_value_heads']
    d, eps = cfg['hidden_size'], cfg['rms_norm_eps']
    hd, T = d // H, len(ids)
    cos, sin = rope_cos_sin(cfg, T)

    def rms(x, g):
        return g * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))

    def rotate_half(x):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return np.concatenate([-x2, x1], axis=-1)

    x = w['model.embed_tokens.weight'][ids]  # [T, d]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(cfg['num_hidden_layers']):
        p = f'model.layers.{l}.'
        h = rms(x, w[p + 'input_layernorm.weight'])
        q = (h @ w[p + 'self_attn.q_proj.weight'].T).reshape(T, H, hd).transpose(1, 0, 2)  # [H, T, hd]
        k = (h @ w[p + 'self_attn.k_proj.weight'].T).reshape(T, KV, hd).transpose(1, 0, 2)
        v = (h @ w[p + 'self_attn.v_proj.weight'].T).reshape(T, KV, hd).transpose(1, 0, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = np.repeat(k, H // KV, axis=0), np.repeat(v, H // KV, axis=0)  # repeat_kv
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v  # [H, T, hd]
        x = x + a.transpose(1, 0, 2).reshape(T, d) @ w[p + 'self_attn.o_proj.weight'].T
        h = rms(x, w[p + 'post_attention_layernorm.weight'])
        g = h @ w[p + 'mlp.gate_proj.weight'].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ w[p + 'mlp.up_proj.weight'].T)) @ w[p + 'mlp.down_proj.weight'].T
    head = w['model.embed_tokens.weight'] if tied else w['lm_head.weight']
    return rms(x, w['model.norm.weight']) @ head.T


def torch_forward(cfg, w, ids, tied):
    F = torch.nn.functional
    w = {k: torch.from_numpy(x.astype(np.float64)) for k, x in w.items()}
    H, KV = cfg['num_attention_heads'], cfg['num_key_value_heads']
    d, eps = cfg['hidden_size'], cfg['rms_norm_eps']
    hd, T = d // H, len(ids)
    cos, sin = (torch.from_numpy(a)[None] for a in rope_cos_sin(cfg, T))  # [1, T, hd]

    def rms(x, g):
        return g * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def rotate_half(x):
        return torch.cat((-x[..., hd // 2:], x[..., : hd // 2]), dim=-1)

    def repeat_kv(x, n):
        kvh, t, dim = x.shape
        return x[:, None].expand(kvh, n, t, dim).reshape(kvh * n, t, dim)

    x = F.embedding(torch.tensor(ids), w['model.embed_tokens.weight'])
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(cfg['num_hidden_layers']):
        p = f'model.layers.{l}.'
        h = rms(x, w[p + 'input_layernorm.weight'])
        q = F.linear(h, w[p + 'self_attn.q_proj.weight']).view(T, H, hd).transpose(0, 1)
        k = F.linear(h, w[p + 'self_attn.k_proj.weight']).view(T, KV, hd).transpose(0, 1)
        v = F.linear(h, w[p + 'self_attn.v_proj.weight']).view(T, KV, hd).transpose(0, 1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, H // KV), repeat_kv(v, H // KV)
        s = torch.matmul(q, k.transpose(1, 2)) / hd ** 0.5
        a = torch.matmul(F.softmax(s.masked_fill(~causal, float('-inf')), dim=-1), v)
        x = x + F.linear(a.transpose(0, 1).reshape(T, d), w[p + 'self_attn.o_proj.weight'])
        h = rms(x, w[p + 'post_attention_layernorm.weight'])
        x = x + F.linear(F.silu(F.linear(h, w[p + 'mlp.gate_proj.weight'])) * F.linear(h, w[p + 'mlp.up_proj.weight']),
                         w[p + 'mlp.down_proj.weight'])
    head = w['model.embed_tokens.weight'] if tied else w['lm_head.weight']
    return F.linear(rms(x, w['model.norm.weight']), head).numpy()


# ------------------------------------------------------------------------------------------------------

TORCH_DTYPE = {'F32': 'float32', 'F16': 'float16', 'BF16': 'bfloat16'}


def build(name, case, seed):
    arch = case.get('arch', 'LlamaForCausalLM')
    cfg = {**BASE, **case['cfg']}
    rng = np.random.default_rng(seed)
    w = make_weights(cfg, rng)
    head = case['head']
    tied = head != 'untied'
    if head == 'both_equal':
        w['lm_head.weight'] = w['model.embed_tokens.weight'].copy()
    # What the file holds: names -> float32 values before rounding.
    held = dict(w)
    if head in ('embed_only', 'alias'):
        del held['lm_head.weight']
    if head == 'lm_head_only':
        held['lm_head.weight'] = held.pop('model.embed_tokens.weight')
    if case.get('inv_freq'):
        hd = cfg['hidden_size'] // cfg['num_attention_heads']
        for l in range(cfg['num_hidden_layers']):
            held[f'model.layers.{l}.self_attn.rotary_emb.inv_freq'] = (
                1.0 / cfg['rope_theta'] ** (np.arange(0, hd, 2) / hd)).astype(np.float32)
    # Store (rounded) and decode back: the reference sees what the loader sees.
    tensors, values = [], {}
    for n in sorted(held):
        dtype = 'F32' if n.endswith('inv_freq') else case['dtype']
        data, val = stored(held[n], dtype)
        tensors.append((n, dtype, held[n].shape, data))
        values[n] = val
    if head == 'lm_head_only':
        values['model.embed_tokens.weight'] = values['lm_head.weight']
    ref = {k: x for k, x in values.items() if not k.endswith('inv_freq')}

    out = os.path.join(ROOT, name)
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))
    metadata = {'format': 'pt'}
    if head == 'alias':
        metadata['lm_head.weight'] = 'model.embed_tokens.weight'
    shards = case.get('shards', 1)
    if shards == 1:
        write_safetensors(os.path.join(out, 'model.safetensors'), tensors, metadata)
    else:
        # As transformers shards: whole tensors in order, each shard up to a size, the index maps them.
        per = -(-len(tensors) // shards)
        weight_map, total = {}, 0
        for s in range(shards):
            file = f'model-{s + 1:05d}-of-{shards:05d}.safetensors'
            part = tensors[s * per:(s + 1) * per]
            write_safetensors(os.path.join(out, file), part, metadata)
            for t in part:
                weight_map[t[0]] = file
                total += len(t[3])
        with open(os.path.join(out, 'model.safetensors.index.json'), 'w') as f:
            json.dump({'metadata': {'total_size': total}, 'weight_map': dict(sorted(weight_map.items()))}, f, indent=2)
    config = {
        'architectures': [arch], 'model_type': 'mistral' if arch == 'MistralForCausalLM' else 'llama',
        'attention_bias': False, 'attention_dropout': 0.0, 'bos_token_id': 1, 'eos_token_id': 2, 'hidden_act': 'silu',
        'initializer_range': 0.02, 'mlp_bias': False, 'pretraining_tp': 1, 'rope_scaling': None,
        'torch_dtype': TORCH_DTYPE[case['dtype']], 'transformers_version': '4.46.0', 'use_cache': True,
        **cfg,
    }
    if arch == 'MistralForCausalLM':
        for k in ('attention_bias', 'mlp_bias', 'pretraining_tp', 'rope_scaling'):
            del config[k]
    with open(os.path.join(out, 'config.json'), 'w') as f:
        json.dump(dict(sorted(config.items())), f, indent=2)

    ids = [i % cfg['vocab_size'] for i in IDS]
    logits = numpy_forward(cfg, ref, ids, tied)
    check = None
    if torch is not None:
        check = float(np.abs(torch_forward(cfg, ref, ids, tied) - logits).max())
        assert check < 1e-10, f'{name}: numpy and torch references differ by {check}'
    return {'ids': ids, 'logits': [[float(f'{v:.9g}') for v in row] for row in logits], 'torchCheck': check}


def main():
    cases = {name: build(name, case, seed) for seed, (name, case) in enumerate(CASES.items(), start=1)}
    doc = {
        'generator': 'test/fixtures-gen/make-hf-llama.py',
        'reference': 'float64 forward of transformers LlamaForCausalLM equations (numpy'
                     + (f'; torch {torch.__version__} transcription agrees to < 1e-10' if torch is not None else '') + ')',
        'cases': cases,
    }
    with open(os.path.join(ROOT, 'expected.json'), 'w') as f:
        json.dump(doc, f, separators=(',', ':'))
        f.write('\n')
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(ROOT) for fn in fns)
    for name, c in cases.items():
        print(f'{name}: torch vs numpy max |diff| = {c["torchCheck"]}')
    print(f'{ROOT}: {total} bytes')


if __name__ == '__main__':
    sys.exit(main())
