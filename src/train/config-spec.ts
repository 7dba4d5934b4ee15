/**
 * Model and tokenizer specs as text: a config as a preset name, inline JSON or a JSON file with
 * overrides; the architecture (Llama or byte-pooled) with its chunking; the tokenizer to train with
 * ('byte' or 'bpe:<vocab size>'). These are what `stlm train --config/--arch/--chunk/--tokenizer` take,
 * and any other caller can use the same strings.
 *
 * Error messages name each setting by `SpecNames` (by default the option's own name, e.g. `config:`);
 * the CLI passes its flags (`--config:`), so the same check reads right to either caller.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolvePooledConfig } from '../models/byte-pooled.js';
import { type LlamaConfig, resolveConfig } from '../models/config.js';

/** What error messages call each setting: the option names for a library caller, the flags for the CLI. */
export interface SpecNames {
  config: string;
  arch: string;
  chunk: string;
  tokenizer: string;
}

/** The names a library caller sees: the keys of `ArchSpec`. */
export const SPEC_NAMES: SpecNames = { config: 'config', arch: 'arch', chunk: 'chunk', tokenizer: 'tokenizer' };

/** A config spec not yet resolved: a preset name, or preset + overrides as an object. */
export type ConfigSpec = string | Record<string, unknown>;

/** A config as text (a preset name, inline JSON, or the path of a JSON file), not yet resolved. */
export function parseConfigSpec(arg: string, names: Pick<SpecNames, 'config'> = SPEC_NAMES): ConfigSpec {
  const text = arg.trim();
  if (text.startsWith('{')) {
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw new Error(`${names.config}: invalid JSON: ${(e as Error).message}`);
    }
    return obj as Record<string, unknown>;
  }
  if (text.endsWith('.json')) {
    if (!existsSync(text)) throw new Error(`${names.config}: file '${text}' does not exist`);
    return parseConfigSpec(readFileSync(text, 'utf8'), names);
  }
  return text;
}

/** A config as text (a preset name, inline JSON, or a JSON file), resolved to a full Llama config. */
export function parseConfigArg(arg: string, names: Pick<SpecNames, 'config'> = SPEC_NAMES): LlamaConfig {
  return resolveConfig(parseConfigSpec(arg, names));
}

/** The tokenizer to train with. */
export type TokenizerSpec = { kind: 'byte' } | { kind: 'bpe'; size: number };

/** A tokenizer spec as text: 'byte' or 'bpe:<vocab size>'. */
export function parseTokenizerArg(arg: string, names: Pick<SpecNames, 'tokenizer'> = SPEC_NAMES): TokenizerSpec {
  if (arg === 'byte') return { kind: 'byte' };
  const m = /^bpe:(\d+)$/.exec(arg);
  if (!m) throw new Error(`${names.tokenizer} must be 'byte' or 'bpe:<vocab size>' (e.g. bpe:2048), got '${arg}'`);
  const size = Number(m[1]);
  if (size < 258 || size > 65536) throw new Error(`${names.tokenizer} bpe:${size}: the vocabulary must hold 256 bytes + 1 special token and at most 65536 tokens`);
  return { kind: 'bpe', size };
}

/** The model to train: its architecture, config text, the pooled model's chunking, and the tokenizer text. */
export interface ArchSpec {
  /** 'llama' (the default) or 'pooled' (the byte-pooled model, models/byte-pooled.ts). */
  arch?: 'llama' | 'pooled';
  /** A preset name, inline JSON or a JSON file; with arch 'pooled' it sets the core, plus the pooled keys. */
  config: string;
  /** Chunking of the pooled model: 'fixed:P' or 'space[:M]' (arch 'pooled' only). */
  chunk?: string;
  /** 'byte' (the default) or 'bpe:<vocab size>'. */
  tokenizer?: string;
}

/** A Llama config, or a byte-pooled one (the core from `config`, plus its pooling keys and `chunk`). */
export function parseArchConfig(o: ArchSpec, names: SpecNames = SPEC_NAMES): LlamaConfig {
  if (o.arch !== 'pooled') {
    if (o.chunk !== undefined) throw new Error(`${names.chunk} applies to ${names.arch} pooled only`);
    return parseConfigArg(o.config, names);
  }
  const tokenizer = o.tokenizer ?? 'byte';
  if (parseTokenizerArg(tokenizer, names).kind !== 'byte') throw new Error(`${names.arch} pooled reads raw bytes: use ${names.tokenizer} byte, not '${tokenizer}'`);
  return resolvePooledConfig(parseConfigSpec(o.config, names), o.chunk);
}
