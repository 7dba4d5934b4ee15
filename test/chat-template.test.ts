// A model's own chat template (Jinja) renders its chats: jinjaChatTemplate against upstream records
// (Phi-3: onnxruntime-extensions' Phi3MiniChatTemplate test, recorded from Hugging Face Python), and
// LocalModel picking the template up from GGUF `tokenizer.chat_template`.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gguf, readGguf, tensorBytes, writeGguf } from '../src/formats/gguf.js';
import { jinjaChatTemplate } from '../src/generate/chat-template.js';
import type { LoadedModel } from '../src/io/model-file.js';
import type { Backend } from '../src/kernels/backend.js';
import { createWasmBackend } from '../src/kernels/wasm/backend.js';
import { LocalModel, modelChatTemplate, plainChatTemplate } from '../src/tiers/local.js';
import { tokenizerFromHfJson } from '../src/tokenizers/hf-json.js';

const FIXTURES = fileURLToPath(new URL('../../../shared/fixtures/', import.meta.url));
const HF_DIR = join(FIXTURES, 'hf-tokenizers');
const PHI3 = join(HF_DIR, 'phi-3-mini-4k-instruct');
const QWEN = join(HF_DIR, 'qwen2.5-instruct-config', 'tokenizer_config.json');
const MODEL = fileURLToPath(new URL('../../models/default.gguf', import.meta.url));

function missing(...paths: string[]): string | false {
  const absent = paths.find((p) => !existsSync(p));
  return absent ? `fixture ${absent} is absent (see ../shared/fixtures/README.md)` : false;
}
const json = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as Record<string, any>;

// Upstream record (fixtures README, onnxruntime-extensions test/pp_api_test/test_tokenizer_chat.cc,
// Phi3MiniChatTemplate): the messages, the text the template renders and the ids that text encodes to.
const PHI3_MESSAGES = [
  { role: 'system', content: 'System message' },
  { role: 'user', content: 'Hello, can you call some tools for me?' },
  { role: 'assistant', content: 'Sure, I can calculate the sum for you!' },
] as const;
const PHI3_TEXT = '<|system|>\nSystem message<|end|>\n<|user|>\nHello, can you call some tools for me?<|end|>\n<|assistant|>\nSure, I can calculate the sum for you!<|end|>\n<|assistant|>\n';
const PHI3_IDS = [32006, 2184, 2643, 32007, 32010, 15043, 29892, 508, 366, 1246, 777, 8492, 363, 592, 29973, 32007, 32001, 18585, 29892, 306, 508, 8147, 278, 2533, 363, 366, 29991, 32007, 32001];

describe('jinjaChatTemplate', () => {
  const phiSkip = missing(join(PHI3, 'tokenizer.json'), join(PHI3, 'tokenizer_config.json'));

  test('Phi-3: a system/user/assistant chat renders to the upstream-recorded text', { skip: phiSkip }, async () => {
    const config = json(join(PHI3, 'tokenizer_config.json'));
    const render = await jinjaChatTemplate(config.chat_template, { bos: config.bos_token, eos: config.eos_token }, 'phi-3 tokenizer_config.json');
    assert.equal(render(PHI3_MESSAGES, { addGenerationPrompt: true }), PHI3_TEXT);
    // Without the generation prompt the template ends with eos_token instead of '<|assistant|>\n'.
    assert.equal(render(PHI3_MESSAGES, { addGenerationPrompt: false }), PHI3_TEXT.slice(0, -'<|assistant|>\n'.length) + '<|endoftext|>');
  });

  test('Phi-3: the rendered chat\'s token ids equal the upstream-recorded ids (no BOS: add_bos_token is false)', { skip: phiSkip }, async () => {
    const tok = tokenizerFromHfJson(readFileSync(join(PHI3, 'tokenizer.json'), 'utf8'), readFileSync(join(PHI3, 'tokenizer_config.json'), 'utf8'));
    const own = await modelChatTemplate({ tokenizer: tok, bundle: { vocab: { tokens: [] } } as unknown as LoadedModel });
    assert.ok(own, 'the Phi-3 tokenizer carries a chat template');
    assert.equal(own.source, 'tokenizer_config');
    const r = own.template([...PHI3_MESSAGES]);
    assert.equal(r.prompt, PHI3_TEXT);
    assert.equal(r.addBos, undefined, 'the template writes no BOS');
    assert.deepEqual(Array.from(tok.encode(r.prompt, { bos: r.addBos ?? tok.addBos })), PHI3_IDS);
  });

  test('Qwen2.5: the tool-calling template renders a plain chat (no tools) with its default system turn', { skip: missing(QWEN) }, async () => {
    const config = json(QWEN);
    const render = await jinjaChatTemplate(config.chat_template, { eos: config.eos_token }, 'qwen2.5 tokenizer_config.json');
    assert.equal(render([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true }),
      '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    assert.equal(render([{ role: 'system', content: 'Be terse.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }], { addGenerationPrompt: false }),
      '<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n');
  });

  test('a template that does not parse throws one line naming where it came from', async () => {
    await assert.rejects(jinjaChatTemplate('{% for m in messages %}{{ m.content }', {}, 'broken.gguf: tokenizer.chat_template'), (e: Error) => {
      assert.match(e.message, /^broken\.gguf: tokenizer\.chat_template: the chat template does not parse: /);
      assert.doesNotMatch(e.message, /\n/);
      return true;
    });
  });

  test('raise_exception throws a clear error naming the template', async () => {
    const render = await jinjaChatTemplate("{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with the user') }}{% endif %}ok", {}, 'strict template');
    assert.equal(render([{ role: 'user', content: 'x' }], { addGenerationPrompt: true }), 'ok');
    assert.throws(() => render([{ role: 'assistant', content: 'x' }], { addGenerationPrompt: true }),
      { message: 'strict template: the chat template refused these messages: Conversations must start with the user' });
  });

  test('bos_token and eos_token are the given texts; an absent one is undefined to the template', async () => {
    const render = await jinjaChatTemplate('{{ bos_token }}|{% if eos_token is defined %}{{ eos_token }}{% else %}none{% endif %}', { bos: '<s>' });
    assert.equal(render([], { addGenerationPrompt: false }), '<s>|none');
  });
});

/** models/default.gguf again, with `tokenizer.chat_template` added to its metadata. */
function withChatTemplate(template: string): Uint8Array {
  const file = readGguf(new Uint8Array(readFileSync(MODEL)), 'default.gguf');
  const meta = new Map(file.metadata);
  meta.set('tokenizer.chat_template', gguf.str(template));
  return writeGguf(meta, file.tensors.map((t) => ({ name: t.name, shape: t.shape, type: t.type, data: tensorBytes(file, t) })), file.alignment);
}

const MESSAGES = [{ role: 'system' as const, content: 'Be terse.' }, { role: 'user' as const, content: 'Once upon a time' }];

describe('LocalModel: the model\'s own chat template', () => {
  let be: Backend;
  before(async () => {
    be = await createWasmBackend({ threads: 1 });
  });
  after(() => be.dispose());

  test('a GGUF with tokenizer.chat_template renders chats with it', async () => {
    const m = await LocalModel.open(withChatTemplate('{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}'), { backend: be });
    try {
      assert.equal(m.chatTemplateSource, 'gguf');
      const r = m.renderChat(MESSAGES);
      assert.deepEqual(r, { prompt: '<system>Be terse.\n<user>Once upon a time\n<assistant>', stop: [] });
      const out = await m.generate({ messages: MESSAGES }, { maxTokens: 8, seed: 3 });
      assert.equal(out.usage.promptTokens, m.promptIds(r.prompt).length);
      assert.ok(out.usage.completionTokens > 0);
    } finally {
      await m.close();
    }
  });

  test('a template that writes bos_token gets no second BOS', async () => {
    const m = await LocalModel.open(withChatTemplate('{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:'), { backend: be });
    try {
      const tok = m.handle.tokenizer;
      assert.notEqual(tok.bos, null);
      const r = m.renderChat(MESSAGES);
      const ids = m.promptIds(r.prompt, { addBos: r.addBos });
      assert.equal(ids[0], tok.bos);
      assert.equal(ids.filter((id) => id === tok.bos).length, 1, 'exactly one BOS');
      // This byte vocabulary reads '<s>' as three bytes: the text comes off and the BOS id goes first instead.
      assert.deepEqual(r, { prompt: 'system: Be terse.\nuser: Once upon a time\nassistant:', stop: [], addBos: true });
      const out = await m.generate({ messages: MESSAGES }, { maxTokens: 4, seed: 3 });
      assert.equal(out.usage.promptTokens, ids.length);
    } finally {
      await m.close();
    }
  });

  test('a GGUF whose template does not parse fails to open with one line naming the file and key', async () => {
    await assert.rejects(LocalModel.open(withChatTemplate('{% if messages %}unclosed'), { backend: be }), (e: Error) => {
      assert.match(e.message, /^<bytes>: tokenizer\.chat_template: the chat template does not parse: /);
      assert.doesNotMatch(e.message, /\n/);
      return true;
    });
  });

  test('a model without a template keeps the plain template; the chatTemplate option still wins', async () => {
    const m = await LocalModel.open(MODEL, { backend: be });
    try {
      assert.equal(m.chatTemplateSource, 'plain');
      assert.deepEqual(m.renderChat(MESSAGES), plainChatTemplate(MESSAGES));
    } finally {
      await m.close();
    }
    const custom = await LocalModel.open(withChatTemplate('{{ messages[0].content }}'), { backend: be, chatTemplate: plainChatTemplate });
    try {
      assert.equal(custom.chatTemplateSource, 'option');
      assert.deepEqual(custom.renderChat(MESSAGES), plainChatTemplate(MESSAGES));
    } finally {
      await custom.close();
    }
  });
});
