/**
 * Reads a Hugging Face tokenizer (tokenizer.json, plus tokenizer_config.json for the special tokens,
 * add_bos_token / add_eos_token and the chat template) into a stlm Tokenizer that encodes and decodes
 * as the Rust `tokenizers` crate does. From strings or parsed objects only: no file access, so it runs
 * in a browser too. Supported: the BPE model (SentencePiece style with byte fallback and '▁', or
 * byte-level) with the normalizers, pre-tokenizers, decoders and post-processors listed in
 * hf-pretokenize.ts and hf-decode.ts; anything else is refused with one line naming the component,
 * its type and the file.
 *
 * Encoding follows TokenizerImpl::encode: added tokens that are not `normalized` are cut out of the raw
 * text first (longest match at the leftmost position, with their lstrip / rstrip / single_word rules),
 * each remaining piece is normalized on its own, added tokens that are `normalized` are cut out of the
 * normalized text, then the pre-tokenizer splits and the BPE model encodes each pre-token.
 *
 * Decoding: `tokenBytes(id)` is one token's bytes as a stream needs them ('▁' -> space, <0xXX> -> that
 * byte, byte-level characters -> their bytes; special tokens -> nothing), and `decode` concatenates
 * them. Like stlm's SentencePiece tokenizer, it keeps the space the normalizer put before the text:
 * HF's decoders drop it (Strip decoder, or Metaspace's first token); `stripsLeadingSpace` says whether
 * they do, `detokenize` drops one leading space when so, and a TokenStreamDecoder should get
 * `afterBos = stripsLeadingSpace` for the first token it is given. `decodeText` is HF's decode exactly
 * (decoder chain over the token strings, skip_special_tokens, clean_up_tokenization_spaces).
 */
import { AddedMatcher, type HfAddedToken, readAddedToken } from './hf-added.js';
import { HfBpe, type HfBpeConfig } from './hf-bpe.js';
import { configName, readConfig } from './hf-config.js';
import { type DecoderInfo, type Template, readDecoder, readPostProcessor } from './hf-decode.js';
import { type Normalizer, type PreTokenizerInfo, readNormalizer, readPreTokenizer } from './hf-pretokenize.js';
import { JsonReader, parseJson } from './hf-read.js';
import { checkId, decodeTokens, wellFormed } from './spm.js';
import { END_OF_GENERATION_TEXTS, type EncodeOptions, type Tokenizer, joinBytes } from './tokenizer.js';

export type { HfAddedToken } from './hf-added.js';

/** Options for {@link HfTokenizer.encode}. */
export interface HfEncodeOptions extends EncodeOptions {
  /**
   * Add what the tokenizer adds around a text for the model (HF's add_special_tokens): the
   * post-processor's template, or BOS / EOS as tokenizer_config.json's add_bos_token / add_eos_token say
   * when it sets them (as transformers' Llama tokenizers do). Default false; `bos` / `eos` still apply.
   */
  addSpecialTokens?: boolean;
  /**
   * Parse special tokens written in the text as those tokens (default true, as HF does). False encodes
   * them as plain text (HF's encode_special_tokens / split_special_tokens); non-special added tokens are
   * still matched.
   */
  parseSpecial?: boolean;
}

/** Options for {@link HfTokenizer.decodeText}. */
export interface HfDecodeOptions {
  /** Leave special tokens out (default true). */
  skipSpecialTokens?: boolean;
  /** transformers' clean_up_tokenization (" ." -> ".", " n't" -> "n't", ...); default: tokenizer_config.json's value, else false. */
  cleanUpTokenizationSpaces?: boolean;
}

/** The parts of tokenizer.json that vocabFromHfTokenizer inspects (parsed, checked). */
export interface HfTokenizerParts {
  model: HfBpeConfig;
  addedTokens: HfAddedToken[];
  /** The raw JSON of the pipeline components (null when absent). */
  normalizer: unknown;
  preTokenizer: unknown;
  decoder: unknown;
  postProcessor: unknown;
}

const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();

/** A Hugging Face BPE tokenizer read from tokenizer.json (+ tokenizer_config.json). */
export class HfTokenizer implements Tokenizer {
  readonly kind = 'hf-bpe';
  readonly vocabSize: number;
  readonly bos: number | null;
  readonly eos: number | null;
  readonly pad: number | null;
  readonly unk: number | null;
  /** Whether a model expects BOS / EOS around its input (what addSpecialTokens adds). */
  readonly addBos: boolean;
  readonly addEos: boolean;
  /** The chat template ('default' when there are several), or null. */
  readonly chatTemplate: string | null;
  /** Every named chat template ('default' for a plain string). */
  readonly chatTemplates: ReadonlyMap<string, string>;
  /** Added tokens (special or not) by their text. */
  readonly specialTokens: Map<string, number>;
  /** Special tokens that end a generation besides EOS (END_OF_GENERATION_TEXTS found among the added tokens). */
  readonly endOfGeneration: readonly number[];
  /** Whether HF's decoder drops a leading space of the text (see the module comment). */
  readonly stripsLeadingSpace: boolean;
  /** Whether the tokens are spelled byte-level (GPT-2's stand-ins), not with '▁' and byte fallback. */
  readonly byteLevel: boolean;
  /** The file name used in messages. */
  readonly source: string;
  readonly parts: HfTokenizerParts;

  private readonly bpe: HfBpe;
  private readonly normalizer: Normalizer | null;
  private readonly preTokenizer: PreTokenizerInfo | null;
  private readonly decoder: DecoderInfo | null;
  private readonly template: Template;
  private readonly rawMatcher: AddedMatcher;
  private readonly normalizedMatcher: AddedMatcher;
  /** id -> token text (model vocabulary, then added tokens over it). */
  private readonly texts: (string | undefined)[];
  private readonly special: Uint8Array;
  private readonly pieces: (Uint8Array | undefined)[];
  private readonly textIds = new Map<string, number>();
  private readonly cleanUp: boolean;

  /** Use {@link tokenizerFromHfJson}. */
  constructor(init: {
    source: string; parts: HfTokenizerParts; bpe: HfBpe; normalizer: Normalizer | null; preTokenizer: PreTokenizerInfo | null;
    decoder: DecoderInfo | null; template: Template; specialIds: Set<number>; bos: number | null; eos: number | null; pad: number | null;
    unk: number | null; addBos: boolean; addEos: boolean; chatTemplates: Map<string, string>; cleanUp: boolean;
  }) {
    this.source = init.source;
    this.parts = init.parts;
    this.bpe = init.bpe;
    this.normalizer = init.normalizer;
    this.preTokenizer = init.preTokenizer;
    this.decoder = init.decoder;
    this.template = init.template;
    this.bos = init.bos;
    this.eos = init.eos;
    this.pad = init.pad;
    this.unk = init.unk;
    this.addBos = init.addBos;
    this.addEos = init.addEos;
    this.chatTemplates = init.chatTemplates;
    this.chatTemplate = init.chatTemplates.get('default') ?? init.chatTemplates.values().next().value ?? null;
    this.cleanUp = init.cleanUp;
    this.byteLevel = init.preTokenizer?.byteLevel ?? false;
    this.stripsLeadingSpace = init.decoder?.stripsLeadingSpace ?? false;

    let size = 0;
    for (const id of this.bpe.vocab.values()) size = Math.max(size, id + 1);
    for (const t of init.parts.addedTokens) size = Math.max(size, t.id + 1);
    this.vocabSize = size;
    this.texts = new Array(size);
    for (const [text, id] of this.bpe.vocab) {
      this.texts[id] = text;
      this.textIds.set(text, id);
    }
    this.special = new Uint8Array(size);
    this.specialTokens = new Map();
    const raw: { pattern: string; tok: HfAddedToken }[] = [];
    const normalized: { pattern: string; tok: HfAddedToken }[] = [];
    for (const t of init.parts.addedTokens) {
      this.texts[t.id] = t.content;
      this.textIds.set(t.content, t.id);
      this.specialTokens.set(t.content, t.id);
      if (t.special) this.special[t.id] = 1;
      if (t.normalized && this.normalizer) {
        const st = { text: t.content, droppedLead: false };
        this.normalizer(st);
        if (st.text.length > 0) normalized.push({ pattern: st.text, tok: t });
      } else if (t.normalized) normalized.push({ pattern: t.content, tok: t });
      else raw.push({ pattern: t.content, tok: t });
    }
    this.endOfGeneration = init.parts.addedTokens.filter((t) => t.special && t.id !== init.eos && END_OF_GENERATION_TEXTS.includes(t.content)).map((t) => t.id);
    for (const id of init.specialIds) this.special[id] = 1;
    this.rawMatcher = new AddedMatcher(raw);
    this.normalizedMatcher = new AddedMatcher(normalized);
    this.pieces = new Array(size);
  }

  encode(text: string, opts: HfEncodeOptions = {}): Int32Array {
    const out: number[] = [];
    if (opts.bos && this.bos !== null) out.push(this.bos);
    if (opts.addSpecialTokens) out.push(...this.template.before);
    this.encodeText(wellFormed(text), opts.parseSpecial ?? true, out);
    if (opts.addSpecialTokens) out.push(...this.template.after);
    if (opts.eos && this.eos !== null) out.push(this.eos);
    return Int32Array.from(out);
  }

  decode(ids: ArrayLike<number>): Uint8Array {
    return decodeTokens(ids, (id) => this.tokenBytes(id)); // a new array: tokenBytes' are shared
  }

  /** Like decode, but drops one leading space when HF's decoder would (stripsLeadingSpace). */
  detokenize(ids: ArrayLike<number>): Uint8Array {
    const bytes = this.decode(ids);
    return this.stripsLeadingSpace && bytes[0] === 0x20 ? bytes.subarray(1) : bytes;
  }

  /** HF's decode: the decoder chain over the token strings (see HfDecodeOptions). */
  decodeText(ids: ArrayLike<number>, opts: HfDecodeOptions = {}): string {
    const skip = opts.skipSpecialTokens ?? true;
    const tokens: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = checkId(this.kind, ids[i], this.vocabSize);
      const t = this.texts[id];
      if (t !== undefined && !(skip && this.special[id])) tokens.push(t);
    }
    let text = this.decoder
      ? this.decoder.run(tokens, 'text').map((t) => (typeof t === 'string' ? t : new TextDecoder().decode(t))).join('')
      : tokens.join(' ');
    if (opts.cleanUpTokenizationSpaces ?? this.cleanUp) text = cleanUpTokenization(text);
    return text;
  }

  tokenBytes(id: number): Uint8Array {
    checkId(this.kind, id, this.vocabSize);
    let bytes = this.pieces[id];
    if (bytes === undefined) {
      const t = this.texts[id];
      if (this.special[id] || t === undefined) bytes = EMPTY;
      else if (!this.decoder) bytes = utf8.encode(t);
      else bytes = joinBytes(this.decoder.run([t], 'stream').map((x) => (typeof x === 'string' ? utf8.encode(x) : x)));
      this.pieces[id] = bytes;
    }
    return bytes;
  }

  /** The id of a token text (model vocabulary or added token), or undefined. */
  tokenId(text: string): number | undefined {
    return this.textIds.get(text);
  }

  /** The text of a token as tokenizer.json spells it, or undefined for an id no token has. */
  tokenText(id: number): string | undefined {
    return this.texts[checkId(this.kind, id, this.vocabSize)];
  }

  /** Whether `id` is a special token (skipped by decodeText, empty in tokenBytes). */
  isSpecial(id: number): boolean {
    return this.special[checkId(this.kind, id, this.vocabSize)] === 1;
  }

  private encodeText(text: string, parseSpecial: boolean, out: number[]): void {
    for (const seg of this.rawMatcher.segments(text, !parseSpecial)) {
      if (seg.id !== null) {
        out.push(seg.id);
        continue;
      }
      if (seg.end === seg.start) continue;
      const st = { text: text.slice(seg.start, seg.end), droppedLead: false };
      this.normalizer?.(st);
      const norm = st.text;
      for (const sub of this.normalizedMatcher.segments(norm, !parseSpecial)) {
        if (sub.id !== null) {
          out.push(sub.id);
          continue;
        }
        if (sub.end === sub.start) continue;
        const piece = { text: norm.slice(sub.start, sub.end), atStart: seg.start === 0 && sub.start === 0 && !st.droppedLead };
        const words = this.preTokenizer ? this.preTokenizer.run([piece]) : [piece];
        for (const w of words) this.bpe.tokenize(w.text, out);
      }
    }
  }
}

/** transformers' clean_up_tokenization. */
export function cleanUpTokenization(text: string): string {
  return text.replaceAll(' .', '.').replaceAll(' ?', '?').replaceAll(' !', '!').replaceAll(' ,', ',').replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't").replaceAll(" 'm", "'m").replaceAll(" 's", "'s").replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
}


/** The model of tokenizer.json as a checked BPE configuration. */
function readModel(r: JsonReader, v: unknown): HfBpeConfig {
  const m = r.obj(v, 'model');
  const type = m.type === undefined && m.merges !== undefined ? 'BPE' : m.type;
  if (type !== 'BPE') {
    if (type === undefined) r.fail('model', "has no 'type' (supported model types: BPE)");
    if (typeof type !== 'string') r.fail('model.type', 'should be a string');
    r.fail('model', `type '${type}' is not supported (supported: BPE)`);
  }
  const vocabObj = r.obj(m.vocab, 'model.vocab');
  const vocab = new Map<string, number>();
  for (const text in vocabObj) {
    const id = vocabObj[text];
    vocab.set(text, typeof id === 'number' && Number.isSafeInteger(id) && id >= 0 ? id : r.int(id, `model.vocab[${JSON.stringify(text)}]`));
  }
  if (vocab.size === 0) r.fail('model.vocab', 'is empty');
  const merges: [string, string][] = [];
  r.arr(m.merges, 'model.merges').forEach((x, i) => {
    if (typeof x === 'string') {
      if (x.startsWith('#version')) return; // a merges.txt header, skipped as HF does
      const parts = x.split(' ');
      if (parts.length !== 2) r.fail(`model.merges[${i}]`, `should be two tokens separated by one space, found ${JSON.stringify(x)}`);
      merges.push([parts[0], parts[1]]);
    } else if (Array.isArray(x) && x.length === 2 && typeof x[0] === 'string' && typeof x[1] === 'string') {
      merges.push([x[0], x[1]]);
    } else r.fail(`model.merges[${i}]`, 'should be a string "a b" or a pair ["a", "b"]');
  });
  const dropout = m.dropout;
  if (dropout !== undefined && dropout !== null && dropout !== 0) {
    r.fail('model.dropout', `is ${String(dropout)}: BPE dropout (random merges) is not supported, stlm encodes deterministically`);
  }
  return {
    vocab,
    merges,
    unkToken: r.optStr(m.unk_token, 'model.unk_token'),
    fuseUnk: r.bool(m.fuse_unk, 'model.fuse_unk', false),
    byteFallback: r.bool(m.byte_fallback, 'model.byte_fallback', false),
    ignoreMerges: r.bool(m.ignore_merges, 'model.ignore_merges', false),
    continuingSubwordPrefix: r.optStr(m.continuing_subword_prefix, 'model.continuing_subword_prefix'),
    endOfWordSuffix: r.optStr(m.end_of_word_suffix, 'model.end_of_word_suffix'),
  };
}


/**
 * Reads tokenizer.json (a JSON string or the parsed object) and, optionally, tokenizer_config.json.
 * `source` names tokenizer.json in errors (default 'tokenizer.json'; the config is named
 * 'tokenizer_config.json' beside it). Throws a VocabError with one line naming the file and the field.
 */
export function tokenizerFromHfJson(tokenizerJson: string | object, tokenizerConfig?: string | object | null, source = 'tokenizer.json'): HfTokenizer {
  const r: JsonReader = new JsonReader(source);
  const json = parseJson(r, tokenizerJson);
  if (json.version !== undefined && json.version !== '1.0') r.fail('version', `is ${JSON.stringify(json.version)}, only "1.0" is known`);
  const model = readModel(r, json.model);
  const bpe = new HfBpe(model, (path, msg) => r.fail(path, msg), source);

  const vocabTexts: string[] = [];
  for (const [text, id] of model.vocab) vocabTexts[id] = text;
  /** HF gives an added token the model's id for the same text, else the id it was saved with. */
  const addedId = (content: string, id: number, path: string, reader = r): number => {
    const own = model.vocab.get(content);
    if (own !== undefined) return own;
    if (vocabTexts[id] !== undefined) reader.fail(path, `is ${id}, which model.vocab gives to ${JSON.stringify(vocabTexts[id])}`);
    return id;
  };
  const addedTokens: HfAddedToken[] = [];
  const seen = new Map<string, number>();
  (json.added_tokens === undefined || json.added_tokens === null ? [] : r.arr(json.added_tokens, 'added_tokens')).forEach((v, i) => {
    const path = `added_tokens[${i}]`;
    const o = r.obj(v, path);
    const content = r.str(o.content, `${path}.content`);
    if (content === '') return; // HF ignores empty added tokens
    const id = addedId(content, r.int(o.id, `${path}.id`), `${path}.id`);
    const tok = readAddedToken(r, o, path, id);
    const previous = seen.get(content);
    if (previous !== undefined) addedTokens[previous] = tok;
    else {
      seen.set(content, addedTokens.length);
      addedTokens.push(tok);
    }
  });

  const config = readConfig(tokenizerConfig, source);
  for (const t of config.extraAddedTokens) {
    if (!seen.has(t.content)) {
      seen.set(t.content, addedTokens.length);
      addedTokens.push({ ...t, id: addedId(t.content, t.id, `added_tokens_decoder[${JSON.stringify(String(t.id))}]`, new JsonReader(configName(source))) });
    }
  }

  const normalizer = readNormalizer(r, json.normalizer, 'normalizer');
  let preJson = json.pre_tokenizer;
  if (config.addPrefixSpace !== undefined && typeof preJson === 'object' && preJson !== null && (preJson as Record<string, unknown>).type === 'ByteLevel') {
    // transformers' GPT-2-family fast tokenizers set a top-level ByteLevel's add_prefix_space from the config.
    preJson = { ...preJson, add_prefix_space: config.addPrefixSpace };
  }
  const preTokenizer = readPreTokenizer(r, preJson, 'pre_tokenizer');
  const decoder = readDecoder(r, json.decoder, 'decoder');
  let template = readPostProcessor(r, json.post_processor, 'post_processor');

  const cr: JsonReader = new JsonReader(config.source);
  const idOfText = (text: string | null, key: string): number | null => {
    if (text === null) return null;
    const id = addedTokens.find((t) => t.content === text)?.id ?? model.vocab.get(text);
    if (id === undefined) cr.fail(key, `is ${JSON.stringify(text)}, which is not a token of ${source}`);
    return id;
  };
  const single = (ids: number[]): number | null => (ids.length === 1 ? ids[0] : null);
  const bos = config.present ? idOfText(config.bos, 'bos_token') : single(template.before);
  const eos = config.present ? idOfText(config.eos, 'eos_token') : single(template.after);
  const pad = idOfText(config.pad, 'pad_token');
  const unk = config.present ? idOfText(config.unk, 'unk_token') : model.unkToken === null ? null : (model.vocab.get(model.unkToken) ?? null);

  let addBos = bos !== null && template.before.includes(bos);
  let addEos = eos !== null && template.after.includes(eos);
  if (config.addBos !== undefined || config.addEos !== undefined) {
    // transformers' Llama tokenizers rebuild the post-processor from these flags.
    addBos = config.addBos ?? addBos;
    addEos = config.addEos ?? addEos;
    if (addBos && bos === null) cr.fail('add_bos_token', 'is true but there is no bos_token');
    if (addEos && eos === null) cr.fail('add_eos_token', 'is true but there is no eos_token');
    template = { before: addBos ? [bos!] : [], after: addEos ? [eos!] : [] };
  }

  let size = 0;
  for (const id of model.vocab.values()) size = Math.max(size, id + 1);
  for (const t of addedTokens) size = Math.max(size, t.id + 1);
  for (const id of [...template.before, ...template.after]) {
    if (id >= size) r.fail('post_processor', `adds token id ${id}, but the tokenizer has ids 0..${size - 1}`);
  }

  const specialIds = new Set<number>();
  for (const text of config.additionalSpecial) {
    const id = idOfText(text, 'additional_special_tokens');
    if (id !== null) specialIds.add(id);
  }

  return new HfTokenizer({
    source,
    parts: { model, addedTokens, normalizer: json.normalizer ?? null, preTokenizer: preJson ?? null, decoder: json.decoder ?? null, postProcessor: json.post_processor ?? null },
    bpe, normalizer, preTokenizer, decoder, template, specialIds, bos, eos, pad, unk, addBos, addEos,
    chatTemplates: config.chatTemplates, cleanUp: config.cleanUp,
  });
}


export { vocabFromHfTokenizer } from './hf-vocab.js';
