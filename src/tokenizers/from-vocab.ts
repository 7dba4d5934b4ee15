/** Builds the tokenizer a vocabulary describes. */
import { ByteTokenizer } from './byte.js';
import { Gpt2Tokenizer, byteVocab } from './gpt2.js';
import { SpmTokenizer } from './spm.js';
import type { Tokenizer } from './tokenizer.js';
import { type VocabSpec, VocabError, validateVocab } from './vocab.js';
import { WordPieceTokenizer } from './wordpiece.js';

/** The tokenizer for a vocabulary: byte, llama (SentencePiece BPE), gpt2 (byte-level BPE) or bert (WordPiece). */
export function tokenizerFromVocab(spec: VocabSpec, source = 'vocabulary'): Tokenizer {
  validateVocab(spec, source);
  switch (spec.model) {
    case 'byte': {
      checkByteVocab(spec, source);
      return new ByteTokenizer();
    }
    case 'llama': return new SpmTokenizer(spec);
    case 'gpt2': return new Gpt2Tokenizer(spec);
    case 'bert': return new WordPieceTokenizer(spec);
  }
}

/** A 'byte' vocabulary must be exactly byteVocab()'s tokens and special ids, or ByteTokenizer would misread it. */
function checkByteVocab(spec: VocabSpec, source: string): void {
  const expected = byteVocab();
  const n = spec.tokens.length;
  if (n !== expected.tokens.length) {
    throw new VocabError(`${source}: a 'byte' vocabulary has ${expected.tokens.length} tokens, this one ${n}`);
  }
  const differs = spec.tokens.findIndex((t, i) => t !== expected.tokens[i]);
  if (differs >= 0) {
    throw new VocabError(`${source}: 'byte' vocabulary token ${differs} is '${spec.tokens[differs]}', expected '${expected.tokens[differs]}'`);
  }
  for (const key of ['bos', 'eos', 'pad'] as const) {
    if (spec[key] !== undefined && spec[key] !== expected[key]) {
      throw new VocabError(`${source}: 'byte' vocabulary ${key} id is ${spec[key]}, expected ${expected[key]}`);
    }
  }
}
