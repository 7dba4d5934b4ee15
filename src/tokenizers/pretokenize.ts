/**
 * GPT-2's pre-tokenizer: splits text into the pieces BPE merges never cross (contractions, runs of
 * letters or digits with an optional leading space, runs of other symbols, whitespace). The same regex
 * as OpenAI's encoder.py and tiktoken's "gpt2" pattern; `\s+(?!\S)` leaves the last space of a run to
 * start the next word. Whitespace is Unicode's White_Space property, as in llama.cpp and Python's
 * `regex` module (JavaScript's \s differs on U+0085 and U+FEFF).
 */
export const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;

/** Splits text into GPT-2 pre-tokens (strings; concatenated they give back the text). */
export function pretokenizeGpt2(text: string): string[] {
  return text.match(new RegExp(GPT2_PATTERN.source, GPT2_PATTERN.flags)) ?? [];
}
