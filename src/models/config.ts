/**
 * The Llama-style decoder's configuration: one type with every knob, named presets, and validation
 * that names the offending key.
 */
import { PROJECTIONS, type ProjectionName } from '../nn/linear.js';
import { addLowRank } from './low-rank.js';

export interface LlamaConfig {
  /** Tokens in the vocabulary (259 for the byte tokenizer: 256 bytes + BOS, EOS, PAD). */
  vocabSize: number;
  /** Width of the residual stream. */
  dModel: number;
  nLayers: number;
  /** Query heads; headDim = dModel / nHeads. */
  nHeads: number;
  /** Key/value heads (grouped-query attention); nHeads must be a multiple. Equal to nHeads is plain MHA. */
  nKvHeads: number;
  /** Hidden width of the SwiGLU MLP. */
  mlpHidden: number;
  /** Context length (positions) the model is trained for. */
  ctx: number;
  /** Output head shares the token embedding (weight tying), saving vocab·dModel parameters. */
  tieEmbeddings: boolean;
  /** RoPE base. */
  ropeTheta: number;
  normEps: number;
  /** Dropout probability on the residual branches during training (0 = off). */
  dropout: number;
  /**
   * Weight sharing (the STLM paper's FFN sharing): every layer uses layer 0's SwiGLU matrices (stored
   * once as blk.0.ffn_*); norms stay per layer. Default false.
   */
  shareFfn?: boolean;
  /**
   * Block-wise sharing (MobileLLM's immediate repeat): each stored block runs this many times in a row,
   * so the model is nLayers·blockRepeat blocks deep with nLayers blocks of parameters. Default 1.
   */
  blockRepeat?: number;
  /**
   * Per-position low-rank adapters on shared weights (Bae et al. 2024, "Relaxed Recursive Transformers";
   * the LoRA-on-shared-weights option of the STLM recipe): every projection whose matrix runs at more than
   * one block position gets, at each position, its own trainable update B·A of this rank (scale 1; B starts
   * at 0, so training starts from the plainly shared model). Stored as blk.<position>.<projection>.lora_a
   * [rank, in] and .lora_b [out, rank]. Needs shareFfn or blockRepeat. Default 0 (none).
   */
  sharedLoraRank?: number;
}

/** The projections of a block, by GGUF tensor name (what adapters attach to): defined in nn/linear.ts. */
export { PROJECTIONS, type ProjectionName };

const BYTE_VOCAB = 259;

const base = { vocabSize: BYTE_VOCAB, tieEmbeddings: true, ropeTheta: 10000, normEps: 1e-5, dropout: 0 };

/** Named presets; tiny and small have the same shapes as the PyTorch anchor (../shared/anchors/torch). */
export const PRESETS: Record<string, LlamaConfig> = {
  /** About 20k parameters: for tests that must overfit in seconds. */
  nano: { ...base, dModel: 32, nLayers: 1, nHeads: 2, nKvHeads: 2, mlpHidden: 96, ctx: 64 },
  /** About 50k parameters. */
  micro: { ...base, dModel: 40, nLayers: 2, nHeads: 4, nKvHeads: 4, mlpHidden: 112, ctx: 128 },
  tiny: { ...base, dModel: 128, nLayers: 4, nHeads: 4, nKvHeads: 4, mlpHidden: 384, ctx: 256 },
  small: { ...base, dModel: 256, nLayers: 6, nHeads: 8, nKvHeads: 8, mlpHidden: 768, ctx: 256 },
  base: { ...base, dModel: 512, nLayers: 8, nHeads: 8, nKvHeads: 8, mlpHidden: 1536, ctx: 512 },
  /** About 113M parameters (GPT-2 small's widths): trains at batch 16 × 512 within 4 GiB with recomputed activations. */
  medium: { ...base, dModel: 768, nLayers: 12, nHeads: 12, nKvHeads: 12, mlpHidden: 3072, ctx: 512 },
};

const KEYS: (keyof LlamaConfig)[] = ['vocabSize', 'dModel', 'nLayers', 'nHeads', 'nKvHeads', 'mlpHidden', 'ctx', 'tieEmbeddings', 'ropeTheta', 'normEps', 'dropout', 'shareFfn', 'blockRepeat', 'sharedLoraRank'];

/** Accepted spellings: camelCase and the snake_case of the issue/llama world (d_model, n_layers, ...). */
const ALIASES: Record<string, keyof LlamaConfig> = {
  vocab: 'vocabSize', vocab_size: 'vocabSize', d_model: 'dModel', dim: 'dModel', n_layers: 'nLayers', n_heads: 'nHeads',
  n_kv_heads: 'nKvHeads', mlp_hidden: 'mlpHidden', hidden_dim: 'mlpHidden', tie_embeddings: 'tieEmbeddings',
  rope_theta: 'ropeTheta', norm_eps: 'normEps', share_ffn: 'shareFfn', block_repeat: 'blockRepeat',
  shared_lora_rank: 'sharedLoraRank',
};

/**
 * Builds a config from a preset name plus overrides (an object, e.g. parsed JSON). Unknown keys are an
 * error that lists the valid ones; the result is validated.
 */
export function resolveConfig(spec: string | Record<string, unknown>): LlamaConfig {
  let preset = 'tiny';
  let overrides: Record<string, unknown> = {};
  if (typeof spec === 'string') preset = spec;
  else {
    overrides = { ...spec };
    if (typeof overrides.preset === 'string') preset = overrides.preset;
    delete overrides.preset;
  }
  const start = PRESETS[preset];
  if (!start) throw new Error(`unknown config preset '${preset}' (valid: ${Object.keys(PRESETS).join(', ')})`);
  const cfg: Record<string, unknown> = { ...start };
  let kvGiven = false;
  for (const [k, v] of Object.entries(overrides)) {
    const key = (KEYS as string[]).includes(k) ? (k as keyof LlamaConfig) : ALIASES[k];
    if (!key) throw new Error(`unknown config key '${k}' (valid keys: preset, ${KEYS.join(', ')}; snake_case also accepted)`);
    cfg[key] = v;
    if (key === 'nKvHeads') kvGiven = true;
  }
  if (!kvGiven && 'nHeads' in overrides) cfg.nKvHeads = cfg.nHeads;
  if (!kvGiven && 'n_heads' in overrides) cfg.nKvHeads = cfg.nHeads;
  return validateConfig(cfg as unknown as LlamaConfig);
}

export function validateConfig(c: LlamaConfig): LlamaConfig {
  const ints: (keyof LlamaConfig)[] = ['vocabSize', 'dModel', 'nLayers', 'nHeads', 'nKvHeads', 'mlpHidden', 'ctx'];
  for (const k of ints) {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 1 << 24) throw new Error(`config ${k} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  if (c.dModel % c.nHeads) throw new Error(`config dModel ${c.dModel} must be a multiple of nHeads ${c.nHeads}`);
  if ((c.dModel / c.nHeads) % 2) throw new Error(`config head dimension dModel/nHeads = ${c.dModel / c.nHeads} must be even (rotary embeddings rotate pairs)`);
  if (c.nHeads % c.nKvHeads) throw new Error(`config nHeads ${c.nHeads} must be a multiple of nKvHeads ${c.nKvHeads}`);
  if (typeof c.tieEmbeddings !== 'boolean') throw new Error(`config tieEmbeddings must be true or false, got ${JSON.stringify(c.tieEmbeddings)}`);
  for (const k of ['ropeTheta', 'normEps'] as const) if (!(typeof c[k] === 'number' && c[k] > 0)) throw new Error(`config ${k} must be a positive number, got ${JSON.stringify(c[k])}`);
  if (!(typeof c.dropout === 'number' && c.dropout >= 0 && c.dropout < 1)) throw new Error(`config dropout must be in [0, 1), got ${JSON.stringify(c.dropout)}`);
  if (c.shareFfn !== undefined && typeof c.shareFfn !== 'boolean') throw new Error(`config shareFfn must be true or false, got ${JSON.stringify(c.shareFfn)}`);
  if (c.blockRepeat !== undefined && !(Number.isInteger(c.blockRepeat) && c.blockRepeat >= 1 && c.blockRepeat <= 16)) {
    throw new Error(`config blockRepeat must be an integer from 1 to 16, got ${JSON.stringify(c.blockRepeat)}`);
  }
  if (c.sharedLoraRank !== undefined) {
    if (!(Number.isInteger(c.sharedLoraRank) && c.sharedLoraRank >= 0 && c.sharedLoraRank <= 256)) {
      throw new Error(`config sharedLoraRank must be an integer from 0 to 256, got ${JSON.stringify(c.sharedLoraRank)}`);
    }
    if (c.sharedLoraRank > 0 && !sharesWeights(c)) throw new Error('config sharedLoraRank needs shared weights (shareFfn or blockRepeat > 1): it adapts a shared matrix per position');
  }
  return c;
}

/** Blocks the forward pass runs: nLayers, each repeated blockRepeat times. */
export function effectiveDepth(c: LlamaConfig): number {
  return c.nLayers * (c.blockRepeat ?? 1);
}

/** Whether the config shares weights, so files for other tools need the shared tensors written out per layer. */
export function sharesWeights(c: LlamaConfig): boolean {
  return !!c.shareFfn || (c.blockRepeat ?? 1) > 1;
}

/** The stored layer whose SwiGLU matrices layer i uses. */
export function ffnSource(c: LlamaConfig, i: number): number {
  return c.shareFfn ? 0 : i;
}

/**
 * The projections whose matrix runs at more than one block position (what sharedLoraRank adapts): all of
 * them when blocks repeat, the FFN's when it is shared, none otherwise.
 */
export function sharedProjections(c: LlamaConfig): ProjectionName[] {
  if ((c.blockRepeat ?? 1) > 1) return [...PROJECTIONS];
  if (c.shareFfn && c.nLayers > 1) return ['ffn_gate', 'ffn_up', 'ffn_down'];
  return [];
}

/** [out, in] of a projection. */
export function projectionShape(c: LlamaConfig, p: ProjectionName): [number, number] {
  const kvDim = c.nKvHeads * headDim(c);
  switch (p) {
    case 'attn_q': case 'attn_output': return [c.dModel, c.dModel];
    case 'attn_k': case 'attn_v': return [kvDim, c.dModel];
    case 'ffn_gate': case 'ffn_up': return [c.mlpHidden, c.dModel];
    case 'ffn_down': return [c.dModel, c.mlpHidden];
  }
}

/** Names of the per-position adapter pair of shared weights (see sharedLoraRank). */
export function sharedLoraNames(position: number, p: ProjectionName): { a: string; b: string } {
  return { a: `blk.${position}.${p}.lora_a`, b: `blk.${position}.${p}.lora_b` };
}

export function headDim(c: LlamaConfig): number {
  return c.dModel / c.nHeads;
}

/**
 * Every stored parameter's name and shape ([out, in] for matrices), in a fixed order (GGUF tensor
 * names). Shared weights are stored once (see shareFfn).
 */
export function parameterShapes(c: LlamaConfig): [string, number[]][] {
  const kvDim = c.nKvHeads * headDim(c);
  const out: [string, number[]][] = [['token_embd.weight', [c.vocabSize, c.dModel]]];
  for (let i = 0; i < c.nLayers; i++) {
    out.push(
      [`blk.${i}.attn_norm.weight`, [c.dModel]],
      [`blk.${i}.attn_q.weight`, [c.dModel, c.dModel]],
      [`blk.${i}.attn_k.weight`, [kvDim, c.dModel]],
      [`blk.${i}.attn_v.weight`, [kvDim, c.dModel]],
      [`blk.${i}.attn_output.weight`, [c.dModel, c.dModel]],
      [`blk.${i}.ffn_norm.weight`, [c.dModel]],
    );
    if (ffnSource(c, i) === i) {
      out.push(
        [`blk.${i}.ffn_gate.weight`, [c.mlpHidden, c.dModel]],
        [`blk.${i}.ffn_up.weight`, [c.mlpHidden, c.dModel]],
        [`blk.${i}.ffn_down.weight`, [c.dModel, c.mlpHidden]],
      );
    }
  }
  const r = c.sharedLoraRank ?? 0;
  if (r > 0) {
    for (let pos = 0; pos < effectiveDepth(c); pos++) {
      for (const p of sharedProjections(c)) {
        const [o, i] = projectionShape(c, p), n = sharedLoraNames(pos, p);
        out.push([n.a, [r, i]], [n.b, [o, r]]);
      }
    }
  }
  out.push(['output_norm.weight', [c.dModel]]);
  if (!c.tieEmbeddings) out.push(['output.weight', [c.vocabSize, c.dModel]]);
  return out;
}

/** Exact number of parameters. */
export function parameterCount(c: LlamaConfig): number {
  return parameterShapes(c).reduce((s, [, shape]) => s + shape.reduce((a, b) => a * b, 1), 0);
}

/**
 * The same function as a plain (unshared) Llama: shared tensors copied into every layer that uses them,
 * repeated blocks written out in order, per-position adapters (sharedLoraRank) folded into each copy.
 * What llama.cpp, llama2.c and Hugging Face files need.
 */
export function materializeSharing<T>(c: LlamaConfig, weights: Map<string, T>): { config: LlamaConfig; weights: Map<string, T> } {
  if (!sharesWeights(c)) return { config: c, weights };
  const repeat = c.blockRepeat ?? 1;
  const config: LlamaConfig = { ...c, nLayers: effectiveDepth(c) };
  delete config.shareFfn;
  delete config.blockRepeat;
  delete config.sharedLoraRank;
  const out = new Map<string, T>();
  const get = (name: string) => {
    const w = weights.get(name);
    if (w === undefined) throw new Error(`model weights: missing tensor '${name}'`);
    return w;
  };
  for (const [name, w] of weights) if (!name.startsWith('blk.')) out.set(name, w);
  for (let i = 0; i < c.nLayers; i++) {
    for (let r = 0; r < repeat; r++) {
      const dst = `blk.${i * repeat + r}.`;
      for (const t of ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm']) out.set(`${dst}${t}.weight`, get(`blk.${i}.${t}.weight`));
      for (const t of ['ffn_gate', 'ffn_up', 'ffn_down']) out.set(`${dst}${t}.weight`, get(`blk.${ffnSource(c, i)}.${t}.weight`));
    }
  }
  const rank = c.sharedLoraRank ?? 0;
  if (rank > 0) {
    // Each position's adapter folded into its own copy: W_pos = W + B_pos·A_pos.
    for (let pos = 0; pos < effectiveDepth(c); pos++) {
      for (const p of sharedProjections(c)) {
        const name = `blk.${pos}.${p}.weight`, n = sharedLoraNames(pos, p);
        const [w, a, b] = [out.get(name), get(n.a), get(n.b)];
        if (!(w instanceof Float32Array && a instanceof Float32Array && b instanceof Float32Array)) {
          throw new Error(`${name}: per-position adapters can only be folded into f32 weights (dequantize the model first)`);
        }
        out.set(name, addLowRank(w, a, b, rank, 1) as T);
      }
    }
  }
  return { config, weights: out };
}
