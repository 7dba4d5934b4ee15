/** tokenizer_config.json: special tokens, add_bos_token / add_eos_token, chat templates and more added tokens. */
import { type HfAddedToken, readAddedToken } from './hf-added.js';
import { JsonReader, parseJson } from './hf-read.js';

/** What tokenizer_config.json says (token texts; ids are looked up by the caller). */
export interface ConfigInfo {
  source: string;
  present: boolean;
  bos: string | null;
  eos: string | null;
  unk: string | null;
  pad: string | null;
  addBos?: boolean;
  addEos?: boolean;
  addPrefixSpace?: boolean;
  chatTemplates: Map<string, string>;
  cleanUp: boolean;
  additionalSpecial: string[];
  extraAddedTokens: HfAddedToken[];
}

/** The name of tokenizer_config.json beside `source`. */
export function configName(source: string): string {
  const slash = Math.max(source.lastIndexOf('/'), source.lastIndexOf('\\'));
  return `${source.slice(0, slash + 1)}tokenizer_config.json`;
}

/** Reads tokenizer_config.json (absent: all defaults); `source` is the name of tokenizer.json. */
export function readConfig(input: string | object | null | undefined, source: string): ConfigInfo {
  const name = configName(source);
  const info: ConfigInfo = { source: name, present: false, bos: null, eos: null, unk: null, pad: null, chatTemplates: new Map(), cleanUp: false, additionalSpecial: [], extraAddedTokens: [] };
  if (input === undefined || input === null) return info;
  const r: JsonReader = new JsonReader(name);
  const c = parseJson(r, input);
  info.present = true;
  /** A token given as a string or as {"__type": "AddedToken", "content": ...}. */
  const tokenText = (v: unknown, key: string): string | null => {
    if (v === undefined || v === null) return null;
    if (typeof v === 'string') return v;
    return r.str(r.obj(v, key).content, `${key}.content`);
  };
  info.bos = tokenText(c.bos_token, 'bos_token');
  info.eos = tokenText(c.eos_token, 'eos_token');
  info.unk = tokenText(c.unk_token, 'unk_token');
  info.pad = tokenText(c.pad_token, 'pad_token');
  if (c.add_bos_token !== undefined && c.add_bos_token !== null) info.addBos = r.bool(c.add_bos_token, 'add_bos_token');
  if (c.add_eos_token !== undefined && c.add_eos_token !== null) info.addEos = r.bool(c.add_eos_token, 'add_eos_token');
  if (typeof c.add_prefix_space === 'boolean') info.addPrefixSpace = c.add_prefix_space;
  info.cleanUp = r.bool(c.clean_up_tokenization_spaces, 'clean_up_tokenization_spaces', false);
  const ct = c.chat_template;
  if (typeof ct === 'string') info.chatTemplates.set('default', ct);
  else if (Array.isArray(ct)) {
    ct.forEach((t, i) => {
      const o = r.obj(t, `chat_template[${i}]`);
      info.chatTemplates.set(r.str(o.name, `chat_template[${i}].name`), r.str(o.template, `chat_template[${i}].template`));
    });
  } else if (ct !== undefined && ct !== null) r.fail('chat_template', 'should be a string or a list of {name, template}');
  if (c.additional_special_tokens !== undefined && c.additional_special_tokens !== null) {
    r.arr(c.additional_special_tokens, 'additional_special_tokens').forEach((v, i) => {
      const t = tokenText(v, `additional_special_tokens[${i}]`);
      if (t !== null) info.additionalSpecial.push(t);
    });
  }
  if (c.added_tokens_decoder !== undefined && c.added_tokens_decoder !== null) {
    for (const [key, v] of Object.entries(r.obj(c.added_tokens_decoder, 'added_tokens_decoder'))) {
      const path = `added_tokens_decoder[${JSON.stringify(key)}]`;
      if (!/^\d+$/.test(key)) r.fail(path, 'should be keyed by a token id');
      const tok = readAddedToken(r, v, path, Number(key));
      if (tok.content !== '') info.extraAddedTokens.push(tok);
    }
  }
  return info;
}
