/**
 * The one model type every architecture implements (the flat Llama, the byte-pooled model): what
 * training, evaluation, generation and the tiers above reach a model through. Inference goes through a
 * step interface, an `InferenceSession`, which holds the KV cache(s) inside; so one generation loop and
 * one `score()` serve every architecture.
 */
import type { Rng } from '../util/rng.js';
import type { Graph, Tensor } from '../tensor/tensor.js';
import type { LlamaConfig } from './config.js';

/**
 * Inference over one sequence. Every call returns next-token logits (a fresh array the caller owns);
 * the session remembers the ids it was fed, up to its capacity.
 */
export interface InferenceSession {
  /** Ids held (the context length so far). */
  readonly length: number;
  /** The most ids it can hold. */
  readonly capacity: number;
  /** Starts over from `ids`; returns the logits [vocab] of the id after them. */
  reset(ids: ArrayLike<number>): Float32Array;
  /** Appends one id; returns the logits [vocab] of the next. */
  push(id: number): Float32Array;
  /** Appends ids in one pass; returns logits [ids.length × vocab]: row i predicts the id after ids[i]. */
  extend(ids: ArrayLike<number>): Float32Array;
  /** Forgets every id after the first `length` (to score several continuations of one context). */
  truncate(length: number): void;
  /** Frees the cache. */
  dispose(): void;
}

/** A language model of any architecture: trainable, and runnable step by step. */
export interface CausalLM {
  /** The GGUF `general.architecture` of its files ('llama', 'stlm-pooled'). */
  readonly architecture: string;
  readonly graph: Graph;
  readonly config: LlamaConfig;
  /**
   * True when the model starts every context from a state of its own (the byte-pooled model's start
   * chunk): nothing such as BOS is fed first, and an empty context is valid.
   */
  readonly ownStart: boolean;
  /** Ids the model never predicts (the sampler and greedy choice skip them), e.g. the byte model's BOS and PAD. */
  readonly neverPredicted: readonly number[];
  /** The tokenizer kind the model reads, when it allows only one (the byte-pooled model: 'byte'). */
  readonly tokenizerKind?: string;
  /** A new inference session with room for `capacity` ids (default: the model's context). */
  session(capacity?: number): InferenceSession;

  // Training.
  readonly params: Map<string, Tensor>;
  /** Draws dropout masks; part of the training state a checkpoint saves. */
  readonly dropoutRng: Rng;
  /** Dropout probability of the residual branches now (set per step by a schedule). */
  dropoutRate: number;
  /** Recompute each block's activations in backward instead of keeping them (activation checkpointing). */
  recompute: boolean;
  /** Mean cross-entropy (nats per target) of windows ids -> targets [batch·t], on the tape; targets < 0 ignored. */
  loss(ids: Int32Array, targets: Int32Array, batch: number): Tensor;
  /** Next-token logits on the tape [batch·t, vocab] (distillation needs them); absent where there are none. */
  trainLogits?(ids: Int32Array, batch: number): Tensor;
  /** Parameters that get weight decay. */
  decayed(t: Tensor): boolean;
  /** Parameters as name -> values (a copy), for saving. */
  weights(): Map<string, Float32Array>;
}

/** The part of a model that training needs (the trainer takes any architecture through a factory). */
export type TrainableModel = Pick<CausalLM, 'graph' | 'config' | 'params' | 'dropoutRng' | 'dropoutRate' | 'recompute' | 'loss' | 'trainLogits' | 'decayed' | 'weights'>;

/** The part of a model that bits-per-byte evaluation needs: its loss, without the tape. */
export type LossModel = Pick<CausalLM, 'graph' | 'loss'>;
