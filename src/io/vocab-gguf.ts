/**
 * A vocabulary in GGUF: the tokenizer.ggml.* keys, as llama.cpp reads and writes them, to and from a
 * VocabSpec (tokenizers/vocab.ts).
 */
import { type GgufFile, type GgufValue, gguf } from '../formats/gguf.js';
import { type VocabSpec, VocabError, mergeProblem, validateVocab } from '../tokenizers/vocab.js';

const KEY = {
  model: 'tokenizer.ggml.model',
  pre: 'tokenizer.ggml.pre',
  tokens: 'tokenizer.ggml.tokens',
  scores: 'tokenizer.ggml.scores',
  types: 'tokenizer.ggml.token_type',
  merges: 'tokenizer.ggml.merges',
  bos: 'tokenizer.ggml.bos_token_id',
  eos: 'tokenizer.ggml.eos_token_id',
  unk: 'tokenizer.ggml.unknown_token_id',
  sep: 'tokenizer.ggml.seperator_token_id', // sic: llama.cpp's spelling
  pad: 'tokenizer.ggml.padding_token_id',
  cls: 'tokenizer.ggml.cls_token_id',
  addBos: 'tokenizer.ggml.add_bos_token',
  addEos: 'tokenizer.ggml.add_eos_token',
  addSpacePrefix: 'tokenizer.ggml.add_space_prefix',
  /** stlm's own key: which stlm tokenizer a gpt2-form vocabulary really is. */
  stlmTokenizer: 'stlm.tokenizer',
} as const;

/** The special token ids and their keys, in the order they are written. */
const ID_KEYS = [['bos', KEY.bos], ['eos', KEY.eos], ['unk', KEY.unk], ['sep', KEY.sep], ['pad', KEY.pad]] as const;

/** GGUF tokenizer.ggml.model values stlm can tokenize with. */
const GGUF_MODELS = ['llama', 'gpt2', 'bert'] as const;

/**
 * Reads a GGUF file's tokenizer.ggml.* keys into a VocabSpec. A gpt2-form vocabulary marked
 * `stlm.tokenizer = 'byte'` reads back as model 'byte'. For bert, a missing bos id falls back to
 * tokenizer.ggml.cls_token_id (llama.cpp uses CLS as BERT's BOS). Throws a VocabError naming the file
 * and the key when a key is missing, has the wrong type, or is inconsistent.
 */
export function vocabFromGguf(file: GgufFile): VocabSpec {
  const name = file.fileName;
  const problem = (key: string, msg: string) => new VocabError(`${name}: ${key} ${msg}`);
  const bad = (key: string, msg: string): never => { throw problem(key, msg); };
  const found = (v: GgufValue): string => (v.type === 'array' ? `an array of ${v.itemType}` : v.type);

  const get = (key: string): GgufValue | undefined => file.metadata.get(key);
  const str = (key: string): string | undefined => {
    const v = get(key);
    if (v === undefined) return undefined;
    return v.type === 'string' ? v.value : bad(key, `should be a string, found ${found(v)}`);
  };
  const bool = (key: string): boolean | undefined => {
    const v = get(key);
    if (v === undefined) return undefined;
    return v.type === 'bool' ? v.value : bad(key, `should be a bool, found ${found(v)}`);
  };
  const id = (key: string): number | undefined => {
    const v = get(key);
    if (v === undefined) return undefined;
    const n = v.type === 'u64' || v.type === 'i64' ? Number(v.value) : typeof v.value === 'number' ? v.value : NaN;
    if (v.type === 'f32' || v.type === 'f64' || !Number.isSafeInteger(n)) bad(key, `should be an integer token id, found ${found(v)}`);
    return n;
  };
  const strings = (key: string): string[] | undefined => {
    const v = get(key);
    if (v === undefined) return undefined;
    return v.type === 'array' && v.itemType === 'string' ? v.value : bad(key, `should be an array of strings, found ${found(v)}`);
  };

  const ggufModel = str(KEY.model) ?? bad(KEY.model, 'is missing');
  if (!(GGUF_MODELS as readonly string[]).includes(ggufModel)) {
    bad(KEY.model, `'${ggufModel}' is not supported (supported: ${GGUF_MODELS.join(', ')})`);
  }
  const tokens = strings(KEY.tokens) ?? bad(KEY.tokens, 'is missing');
  const n = tokens.length;
  if (n === 0) bad(KEY.tokens, 'is empty');

  const spec: VocabSpec = { model: ggufModel as VocabSpec['model'], tokens };
  if (str(KEY.stlmTokenizer) === 'byte') {
    if (ggufModel !== 'gpt2') bad(KEY.stlmTokenizer, `is 'byte' but ${KEY.model} is '${ggufModel}', not 'gpt2'`);
    spec.model = 'byte';
  }

  const pre = str(KEY.pre);
  if (pre !== undefined) spec.pre = pre;

  const scores = get(KEY.scores);
  if (scores !== undefined) {
    if (scores.type !== 'array' || scores.itemType !== 'f32') throw problem(KEY.scores, `should be an array of f32, found ${found(scores)}`);
    if (scores.value.length !== n) bad(KEY.scores, `has ${scores.value.length} values for ${n} tokens`);
    spec.scores = scores.value as Float32Array;
  }
  const types = get(KEY.types);
  if (types !== undefined) {
    if (types.type !== 'array' || (types.itemType !== 'i32' && types.itemType !== 'u32')) {
      throw problem(KEY.types, `should be an array of i32, found ${found(types)}`);
    }
    if (types.value.length !== n) bad(KEY.types, `has ${types.value.length} values for ${n} tokens`);
    spec.types = Int32Array.from(types.value as Int32Array);
  }
  const merges = strings(KEY.merges);
  if (merges !== undefined) spec.merges = merges;
  else if (ggufModel === 'gpt2') bad(KEY.merges, 'is missing (a gpt2 vocabulary needs its merges)');

  for (const [field, key] of ID_KEYS) {
    const v = id(key);
    if (v === undefined) continue;
    if (v < 0 || v >= n) bad(key, `${v} is outside the ${n} tokens`);
    spec[field] = v;
  }
  if (spec.model === 'bert' && spec.bos === undefined) {
    const cls = id(KEY.cls);
    if (cls !== undefined) {
      if (cls < 0 || cls >= n) bad(KEY.cls, `${cls} is outside the ${n} tokens`);
      spec.bos = cls;
    }
  }

  const addBos = bool(KEY.addBos);
  if (addBos !== undefined) spec.addBos = addBos;
  const addEos = bool(KEY.addEos);
  if (addEos !== undefined) spec.addEos = addEos;
  const addSpacePrefix = bool(KEY.addSpacePrefix);
  if (addSpacePrefix !== undefined) spec.addSpacePrefix = addSpacePrefix;

  if (spec.merges) {
    const issue = mergeProblem(tokens, spec.merges);
    if (issue) bad(KEY.merges, `is invalid: ${issue}`);
  }
  validateVocab(spec, name);
  return spec;
}

/**
 * The tokenizer.ggml.* metadata entries for a vocabulary, in the order llama.cpp's converters write
 * them. Model 'byte' is written as a gpt2 vocabulary without merges plus `stlm.tokenizer = 'byte'`
 * (llama.cpp then reads it as byte-level BPE, which it is); its tokens must be those of byteVocab().
 */
export function vocabToGguf(spec: VocabSpec): [string, GgufValue][] {
  if (spec.exportBlocker) throw new VocabError(spec.exportBlocker);
  validateVocab(spec, 'vocabulary');
  const isByte = spec.model === 'byte';
  if (isByte && spec.tokens.length !== 259) {
    throw new VocabError(`vocabulary: a 'byte' vocabulary has 259 tokens, not ${spec.tokens.length} (build it with byteVocab())`);
  }
  const out: [string, GgufValue][] = [[KEY.model, gguf.str(isByte ? 'gpt2' : spec.model)]];
  if (spec.pre !== undefined) out.push([KEY.pre, gguf.str(spec.pre)]);
  out.push([KEY.tokens, gguf.arr('string', spec.tokens)]);
  if (spec.scores) out.push([KEY.scores, gguf.arr('f32', spec.scores)]);
  if (spec.types) out.push([KEY.types, gguf.arr('i32', spec.types)]);
  if (spec.merges || isByte || spec.model === 'gpt2') out.push([KEY.merges, gguf.arr('string', spec.merges ?? [])]);
  for (const [field, key] of ID_KEYS) {
    const v = spec[field];
    if (v !== undefined) out.push([key, gguf.u32(v)]);
  }
  if (spec.addBos !== undefined) out.push([KEY.addBos, gguf.bool(spec.addBos)]);
  if (spec.addEos !== undefined) out.push([KEY.addEos, gguf.bool(spec.addEos)]);
  if (spec.addSpacePrefix !== undefined) out.push([KEY.addSpacePrefix, gguf.bool(spec.addSpacePrefix)]);
  if (isByte) out.push([KEY.stlmTokenizer, gguf.str('byte')]);
  return out;
}
