/**
 * llama2.c's tokenizer file (tokenizer.bin, tok512.bin ...) and run.c's way of printing tokens.
 *
 * Layout, little-endian: i32 max_token_length (longest piece in bytes), then for each of the model's
 * vocab_size tokens: f32 score, i32 length, that many bytes of UTF-8. The file does not hold its own
 * token count; the model checkpoint does. llama2.c's exporter (tokenizer.py) writes SentencePiece
 * pieces with ' ' where SentencePiece has '▁', and BOS / EOS as "\n<s>\n" / "\n</s>\n"; reading undoes
 * both, so the vocabulary is in llama.cpp's form and writing gives the same bytes back. run.c hard-codes
 * BOS = 1, EOS = 2 and byte fallback to id byte + 3, which is where SentencePiece puts <0x00>..<0xFF>.
 */
import { SPM_SPACE } from './spm.js';
import { joinBytes } from './tokenizer.js';
import { TOKEN_TYPE, type VocabSpec, VocabError, validateVocab } from './vocab.js';

/** The ids run.c hard-codes. */
const LLAMA2C_UNK = 0;
const LLAMA2C_BOS = 1;
const LLAMA2C_EOS = 2;

/** How llama2.c's exporter writes the BOS and EOS pieces. */
const EXPORTED_SPECIALS: Record<number, [piece: string, token: string]> = {
  [LLAMA2C_BOS]: ['\n<s>\n', '<s>'],
  [LLAMA2C_EOS]: ['\n</s>\n', '</s>'],
};

const BYTE_TOKEN = /^<0x[0-9A-F]{2}>$/;
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8 = new TextEncoder();

/**
 * Reads a llama2.c tokenizer file holding `vocabSize` tokens (the model header's vocab_size) as a
 * 'llama' vocabulary: unk 0, BOS 1, EOS 2, <0xXX> pieces typed BYTE, the rest NORMAL, space prefix on.
 * Throws a VocabError naming the file for truncated files, bad lengths, invalid UTF-8, and files that
 * hold more tokens than `vocabSize`. Allocates nothing larger than the file.
 */
export function readLlama2cTokenizer(bytes: Uint8Array, fileName: string, vocabSize: number): VocabSpec {
  const bad = (msg: string): never => { throw new VocabError(`${fileName}: ${msg}`); };
  if (!Number.isSafeInteger(vocabSize) || vocabSize < 1) bad(`vocabulary size ${vocabSize} is not a positive integer`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 4) bad(`truncated: ${bytes.length} bytes, too short for the max_token_length header (4 bytes)`);
  const maxTokenLength = view.getInt32(0, true);
  if (maxTokenLength < 0) bad(`max_token_length is ${maxTokenLength}, negative (not a llama2.c tokenizer file?)`);
  // Every token takes at least 8 bytes, so this bounds the arrays by the file size.
  if (vocabSize > (bytes.length - 4) / 8) {
    bad(`truncated: ${vocabSize} tokens need at least ${4 + 8 * vocabSize} bytes, the file has ${bytes.length} (vocabulary size mismatch?)`);
  }

  const tokens: string[] = [];
  const scores = new Float32Array(vocabSize);
  let at = 4;
  for (let i = 0; i < vocabSize; i++) {
    if (bytes.length - at < 8) bad(`truncated: token ${i} of ${vocabSize} needs 8 bytes at offset ${at}, the file ends at ${bytes.length}`);
    scores[i] = view.getFloat32(at, true);
    const len = view.getInt32(at + 4, true);
    at += 8;
    if (len < 0) bad(`token ${i} has a negative length ${len} (at offset ${at - 4})`);
    if (len > bytes.length - at) bad(`token ${i} is ${len} bytes long at offset ${at}, past the end of the file (${bytes.length} bytes)`);
    let piece: string;
    try {
      piece = utf8Strict.decode(bytes.subarray(at, at + len));
    } catch {
      return bad(`token ${i} (offset ${at}) is not valid UTF-8`);
    }
    at += len;
    tokens.push(tokenOfPiece(piece, i));
  }
  if (at !== bytes.length) {
    bad(`${bytes.length - at} bytes follow the ${vocabSize} tokens: the file holds more tokens than the model's vocabulary (size mismatch?)`);
  }

  const types = Int32Array.from(tokens, (t, i) =>
    i === LLAMA2C_UNK ? TOKEN_TYPE.UNKNOWN
      : i === LLAMA2C_BOS || i === LLAMA2C_EOS ? TOKEN_TYPE.CONTROL
        : BYTE_TOKEN.test(t) ? TOKEN_TYPE.BYTE : TOKEN_TYPE.NORMAL);
  const spec: VocabSpec = { model: 'llama', tokens, scores, types, addBos: true, addEos: false, addSpacePrefix: true };
  if (vocabSize > LLAMA2C_UNK) spec.unk = LLAMA2C_UNK;
  if (vocabSize > LLAMA2C_BOS) spec.bos = LLAMA2C_BOS;
  if (vocabSize > LLAMA2C_EOS) spec.eos = LLAMA2C_EOS;
  validateVocab(spec, fileName);
  return spec;
}

/**
 * Writes a 'llama' vocabulary as a llama2.c tokenizer file (the inverse of readLlama2cTokenizer).
 * Throws when the vocabulary is not SentencePiece-style or its BOS / EOS are not run.c's 1 and 2.
 */
export function writeLlama2cTokenizer(spec: VocabSpec): Uint8Array {
  validateVocab(spec, 'vocabulary');
  if (spec.model !== 'llama') throw new VocabError(`vocabulary: llama2.c tokenizers are SentencePiece-style ('llama'), not '${spec.model}'`);
  for (const [key, id] of [['bos', LLAMA2C_BOS], ['eos', LLAMA2C_EOS]] as const) {
    if (spec[key] !== undefined && spec[key] !== id) {
      throw new VocabError(`vocabulary: run.c hard-codes ${key} id ${id}, this vocabulary's is ${spec[key]}`);
    }
  }
  const pieces = spec.tokens.map((_, i) => utf8.encode(llama2cPiece(spec, i)));
  const maxLength = pieces.reduce((m, p) => Math.max(m, p.length), 0);
  const out = new Uint8Array(4 + pieces.reduce((n, p) => n + 8 + p.length, 0));
  const view = new DataView(out.buffer);
  view.setInt32(0, maxLength, true);
  let at = 4;
  pieces.forEach((p, i) => {
    view.setFloat32(at, spec.scores?.[i] ?? 0, true);
    view.setInt32(at + 4, p.length, true);
    out.set(p, at + 8);
    at += 8 + p.length;
  });
  return out;
}

/** The vocabulary's token for a piece as llama2.c stores it. */
function tokenOfPiece(piece: string, id: number): string {
  const special = EXPORTED_SPECIALS[id];
  if (special && piece === special[0]) return special[1];
  return piece.replaceAll(' ', SPM_SPACE);
}

/** The piece llama2.c holds for token `id` (what its exporter writes and run.c prints). */
export function llama2cPiece(spec: VocabSpec, id: number): string {
  const text = spec.tokens[id];
  if (text === undefined) throw new RangeError(`llama2.c tokenizer: token id ${id} is outside [0, ${spec.tokens.length})`);
  const special = EXPORTED_SPECIALS[id];
  if (special && text === special[1]) return special[0];
  return text.replaceAll(SPM_SPACE, ' ');
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{1,2})/;
const EMPTY = new Uint8Array(0);

/** C's isprint || isspace in the "C" locale. */
function printable(b: number): boolean {
  return (b >= 0x20 && b <= 0x7e) || (b >= 0x09 && b <= 0x0d);
}

/**
 * The bytes llama2.c's run.c prints for `token` after `prevToken` (decode + safe_printf): after BOS (1)
 * a leading space is dropped, a "<0xXX>" piece is that raw byte, and a piece that is one byte which is
 * neither printable nor whitespace (controls, and any byte >= 0x80) prints nothing.
 */
export function decodePieceLlama2c(spec: VocabSpec, prevToken: number, token: number): Uint8Array {
  let piece = llama2cPiece(spec, token);
  if (prevToken === LLAMA2C_BOS && piece[0] === ' ') piece = piece.slice(1);
  const byte = BYTE_PIECE.exec(piece);
  const bytes = byte ? Uint8Array.of(Number.parseInt(byte[1], 16)) : utf8.encode(piece);
  if (bytes.length === 1 && !printable(bytes[0])) return EMPTY;
  const nul = bytes.indexOf(0); // printf("%s") stops at a NUL byte
  return nul >= 0 ? bytes.subarray(0, nul) : bytes;
}

/** What run.c prints for a sequence of generated ids; `prevToken` is the token before the first (BOS). */
export function decodeLlama2c(spec: VocabSpec, ids: ArrayLike<number>, prevToken = LLAMA2C_BOS): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < ids.length; i++) {
    parts.push(decodePieceLlama2c(spec, prevToken, ids[i]));
    prevToken = ids[i];
  }
  return joinBytes(parts);
}
