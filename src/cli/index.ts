#!/usr/bin/env node
/**
 * The `stlm` command: train, finetune, merge, synth, generate, info, convert, quantize, eval, route, route-learn, bench, recommend, serve. Errors print one clear line and exit non-zero
 * (set STLM_DEBUG=1 for the stack trace).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createBackend } from '../kernels/index.js';
import { QUANT_TARGETS } from '../io/quantize.js';
import { DROPOUT_SCHEDULES } from '../train/schedule.js';
import { parseBytes } from '../train/memory-plan.js';
import { runConvert } from './convert.js';
import { runEvalBpb, runEvalTasks, runEvalTierBpb } from './eval.js';
import { runQuantize } from './quantize.js';
import { runGenerate } from './generate.js';
import { runInfo } from './info.js';
import { runTrain } from './train.js';
import { runFinetune } from './finetune.js';
import { runMerge } from './merge.js';
import { runSynth } from './synth.js';
import { runRoute } from './route.js';
import { runRouteLearn } from './route-learn.js';
import { runServe } from './serve.js';
import { runBenchCli } from './bench.js';
import { runRecommend } from './recommend.js';
import { parseSize } from '../compare/recommend.js';
import { enableRelaxedSimd } from '../kernels/wasm/relaxed-flag.js';

/** The embedded default model, shipped in the package. */
export const DEFAULT_MODEL = fileURLToPath(new URL('../../../models/default.gguf', import.meta.url));

function bytes(name: string) {
  return (v: string) => {
    try {
      return parseBytes(v, name);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}

function int(name: string, min = 0) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got '${v}'`);
    return n;
  };
}
function num(name: string, min = -Infinity, max = Infinity) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number in [${min}, ${max}], got '${v}'`);
    return n;
  };
}

export async function backendFrom(opts: { backend: string; threads?: number }) {
  return createBackend(opts.backend as 'wasm' | 'reference', { threads: opts.threads });
}

const program = new Command();
program.name('stlm').description('Super tiny language models: train on a CPU, generate, inspect.').version(readVersion()).showHelpAfterError();

const backendOpts = (c: Command) =>
  c
    .addOption(new Option('--backend <name>', 'compute backend').choices(['wasm', 'reference']).default('wasm'))
    .option('--threads <n>', 'threads (default: all cores)', int('--threads', 1));

backendOpts(
  program
    .command('train')
    .description('train a model on text files (byte-level or BPE)')
    .requiredOption('--data <path>', 'a text file or a folder of text files')
    .option('--config <preset|json|file>', 'nano, micro, tiny, small, base, medium, or JSON (inline or a file) with overrides, e.g. {"preset":"tiny","n_layers":2}; with --arch pooled it sets the core, plus byte_dim, decoder_layers, decoder_heads, decoder_mlp_hidden', 'tiny')
    .addOption(new Option('--arch <arch>', "'llama', or 'pooled': tokenizer-free, bytes pooled into chunks for the core and decoded back byte by byte").choices(['llama', 'pooled']).default('llama'))
    .option('--chunk <rule>', "chunking of --arch pooled: 'fixed:P' (every P bytes) or 'space[:M]' (SpaceByte's word boundaries, at most M bytes, default 8); default fixed:4")
    .option('--tokenizer <byte|bpe:N>', "'byte' (256 bytes + 3 specials) or 'bpe:N' (byte-level BPE of N tokens learned from the training split)", 'byte')
    .requiredOption('--out <model.gguf>', 'the model file to write (the checkpoint goes to <out>.ckpt)')
    .option('--steps <n>', 'optimizer steps', int('--steps', 1))
    .option('--minutes <m>', 'train for this many minutes (sets the schedule from the measured speed)', num('--minutes', 0.01))
    .option('--resume', 'continue from <out>.ckpt', false)
    .option('--batch <n>', 'sequences per batch (run as micro-batches when --memory needs it; the update is the whole batch\'s)', int('--batch', 1), 16)
    .option('--ctx <n>', 'window length (default: the config context)', int('--ctx', 1))
    .option('--accum <n>', 'batches per step (gradient accumulation)', int('--accum', 1), 1)
    .option('--memory <size>', 'memory the engine may use, e.g. 3GB: picks the micro-batch and whether to recompute activations, and says what it chose (default: the backend\'s limit, 4 GiB)', bytes('--memory'))
    .option('--lr <x>', 'peak learning rate', num('--lr', 0), 1e-3)
    .option('--min-lr <x>', 'final learning rate (default lr/10)', num('--min-lr', 0))
    .option('--warmup <n>', 'warmup steps', int('--warmup', 0), 100)
    .option('--weight-decay <x>', 'AdamW weight decay (matrices only)', num('--weight-decay', 0), 0.1)
    .option('--clip <x>', 'clip the global gradient norm (0 = off)', num('--clip', 0), 1)
    .option('--seed <n>', 'seed for init, data and dropout', int('--seed', 0), 1)
    .option('--dropout <p>', 'dropout on the residual branches (overrides the config)', num('--dropout', 0, 0.95))
    .option('--teacher <model>', 'distill from this model (same tokenizer): the loss mixes cross-entropy with KL to its predictions')
    .option('--distill-weight <w>', 'weight of the KL term', num('--distill-weight', 0, 1), 0.5)
    .option('--distill-temperature <t>', 'softmax temperature of the KL term', num('--distill-temperature', 0.1, 100), 2)
    .addOption(new Option('--distill-schedule <kind>', 'constant, or linear-decay (the weight falls to 0 over the run)').choices(['constant', 'linear-decay']).default('constant'))
    .addOption(new Option('--dropout-schedule <kind>', 'constant, linear (0 -> p over the run) or triangular (0 -> p at mid-run -> 0)').choices(DROPOUT_SCHEDULES).default('constant'))
    .option('--eval-every <n>', 'validation bits per byte every n steps (0 = only at the end)', int('--eval-every', 0), 200)
    .option('--eval-windows <n>', 'validation windows per periodic evaluation', int('--eval-windows', 1), 32)
    .option('--save-every <n>', 'checkpoint every n steps (0 = only at the end)', int('--save-every', 0), 500),
).action(async (o) => runTrain(o, await backendFrom(o)));

backendOpts(
  program
    .command('generate')
    .description('generate text from a prompt (the embedded default model unless --model is given)')
    .option('--model <file>', 'model: GGUF, llama2.c .bin, or a Hugging Face directory', DEFAULT_MODEL)
    .option('--tokenizer <file>', 'tokenizer file for models without one inside (llama2.c tokenizer.bin, or a GGUF vocabulary)')
    .option('--prompt <text>', 'the prompt', '')
    .option('--bos', 'prepend BOS to the prompt (default: as the vocabulary says)')
    .option('--no-bos', 'do not prepend BOS')
    .option('--max-tokens <n>', 'tokens to generate', int('--max-tokens', 0), 256)
    .option('--temperature <t>', '0 = greedy', num('--temperature', 0), 0.8)
    .option('--top-k <k>', '0 = off', int('--top-k', 0), 0)
    .option('--top-p <p>', '1 = off', num('--top-p', 0, 1), 0.95)
    .option('--min-p <p>', '0 = off', num('--min-p', 0, 1), 0.05)
    .option('--repeat-penalty <r>', '1 = off', num('--repeat-penalty', 0), 1)
    .option('--repeat-window <n>', 'tokens the repeat penalty looks back', int('--repeat-window', 0), 64)
    .option('--seed <n>', 'sampling seed', int('--seed', 0), 1)
    .option('--stop <s...>', 'stop strings')
    .option('--stats', 'print prompt and decode speed to stderr', false)
    .option('--lora <adapter.gguf>', 'apply a LoRA adapter (stlm finetune --lora, or llama.cpp\'s) without merging it'),
).action(async (o) => runGenerate(o, await backendFrom(o)));

program
  .command('info')
  .description('show a model file: config, parameters, bytes, tokenizer')
  .argument('[model]', 'model: GGUF, llama2.c .bin, or a Hugging Face directory', DEFAULT_MODEL)
  .option('--tokenizer <file>', 'tokenizer file for models without one inside')
  .option('--json', 'print JSON', false)
  .action(async (model, o) => runInfo(model, o));

program
  .command('convert')
  .description('convert a model between GGUF, llama2.c and Hugging Face safetensors')
  .argument('<in>', 'model: GGUF, llama2.c .bin, or a Hugging Face directory')
  .argument('<out>', 'output: .gguf, .bin (llama2.c, with tok<vocab>.bin beside it), or a directory (Hugging Face)')
  .option('--tokenizer <file>', 'tokenizer file for models without one inside')
  .addOption(new Option('--to <format>', 'output format (default: from the output path)').choices(['gguf', 'llama2c', 'hf']))
  .addOption(new Option('--type <type>', 'tensor type of the matrices').choices(['f32', 'f16', 'bf16']).default('f32'))
  .action(async (input, output, o) => runConvert(input, output, o));

program
  .command('quantize')
  .description('write a quantized GGUF (Q8_0, Q4_0, Q4_K) from an f32/f16 model; norms stay F32')
  .argument('<in>', 'model: GGUF, llama2.c .bin, or a Hugging Face directory')
  .argument('<out>', 'output GGUF file')
  .addOption(new Option('--type <type>', 'type of the matrices').choices(QUANT_TARGETS).makeOptionMandatory())
  .addOption(new Option('--embedding-type <type>', 'type of the token embedding / tied output head (default: q8_0 for 4-bit types, else --type)').choices(QUANT_TARGETS))
  .option('--tokenizer <file>', 'tokenizer file for models without one inside')
  .option('--allow-requantize', 'quantize a model that is already quantized', false)
  .action(async (input, output, o) => runQuantize(input, output, o));

const evalCmd = program.command('eval').description('evaluate a model');
backendOpts(
  evalCmd
    .command('bpb')
    .description('bits per byte of a model on a text (non-overlapping windows of the context)')
    .option('--model <file>', 'model: GGUF (quantized ones run quantized), llama2.c .bin, or a Hugging Face directory', DEFAULT_MODEL)
    .option('--tokenizer <file>', 'tokenizer file for models without one inside')
    .requiredOption('--data <path>', 'a text file or a folder of text files')
    .addOption(new Option('--split <which>', "'val': the last 10% (the training split's complement), 'all': everything").choices(['val', 'all']).default('val'))
    .option('--ctx <n>', 'window length (default: the model context)', int('--ctx', 1))
    .option('--batch <n>', 'windows per forward pass', int('--batch', 1), 8)
    .option('--tiers <file>', 'evaluate a tier of this tiers config instead of --model (any provider: local, llamacpp, openai), through its log-likelihoods; bits are divided by UTF-8 bytes')
    .option('--tier <name>', 'the tier of --tiers to evaluate (auto: the router the file describes)')
    .option('--window-bytes <n>', 'with --tiers: longest window scored at once, in bytes (default: the tier\'s context length less one, else 1024)', int('--window-bytes', 1))
    .option('--json', 'print JSON', false),
).action(async (o) => (o.tiers !== undefined || o.tier !== undefined ? runEvalTierBpb(o, () => backendFrom(o)) : runEvalBpb(o, await backendFrom(o))));

backendOpts(
  evalCmd
    .command('tasks')
    .description('accuracy on zero-shot tasks as lm-evaluation-harness scores them (acc, acc_norm, greedy match): JSON lines of BLiMP {sentence_good, sentence_bad}, llm-foundry multiple choice {query, choices, gold}, schema {context_options, continuation, gold} or language modelling {context, continuation}, and HellaSwag\'s paired *_correct.txt / *_wrong.txt files; a folder runs every task file under it')
    .argument('<path>', 'a task file or a folder of them')
    .option('--model <file>', 'model: GGUF (quantized ones run quantized), llama2.c .bin, or a Hugging Face directory', DEFAULT_MODEL)
    .option('--tokenizer <file>', 'tokenizer file for models without one inside')
    .option('--tiers <file>', 'evaluate a tier of this tiers config instead of --model (local, llamacpp, or an openai endpoint with echo + logprobs)')
    .option('--tier <name>', 'the tier of --tiers to evaluate (auto: the router the file describes)')
    .option('--limit <n>', 'at most n items per task file (the first n, or a seeded sample with --seed)', int('--limit', 1))
    .option('--seed <n>', 'with --limit: pick the items by this seed (the same seed picks the same items)', int('--seed', 0))
    .option('--json', 'print the results as JSON instead of a table', false)
    .option('--out <file.json>', 'also write the results as JSON to this file'),
).action(async (path, o) => runEvalTasks(path, o, () => backendFrom(o)));

backendOpts(
  program
    .command('finetune')
    .description('fine-tune a model on prompt/completion JSONL ({"prompt": ..., "completion": ...} per line; the loss is on the completion only): LoRA adapters with --lora, else every weight')
    .option('--model <file>', 'base model: GGUF, llama2.c .bin, or a Hugging Face directory (quantized GGUF is decoded to f32)', DEFAULT_MODEL)
    .option('--tokenizer <file>', 'tokenizer file for models without one inside')
    .requiredOption('--data <train.jsonl>', 'training examples')
    .option('--test <test.jsonl>', 'held-out examples: loss and accuracy before and after')
    .requiredOption('--out <file.gguf>', 'with --lora: the adapter (llama.cpp LoRA GGUF); else the fine-tuned model')
    .option('--lora', 'train LoRA adapters on a frozen base instead of every weight', false)
    .option('--rank <r>', 'LoRA rank', int('--rank', 1), 8)
    .option('--alpha <a>', 'LoRA alpha (the update is scaled by alpha/rank)', num('--alpha', 0), 16)
    .option('--targets <list>', 'LoRA projections, comma-separated: attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down (default attn_q,attn_v)')
    .option('--steps <n>', 'optimizer steps', int('--steps', 1))
    .option('--epochs <n>', 'passes over the training data (default 1 unless --steps)', int('--epochs', 1))
    .option('--lr <x>', 'peak learning rate (default 1e-3 with --lora, 1e-4 full)', num('--lr', 0))
    .option('--min-lr <x>', 'final learning rate of the cosine (default lr/10)', num('--min-lr', 0))
    .option('--warmup <n>', 'warmup steps (default a tenth of the run, at most 100)', int('--warmup', 0))
    .option('--batch <n>', 'examples per step', int('--batch', 1), 8)
    .option('--weight-decay <x>', 'AdamW weight decay', num('--weight-decay', 0), 0)
    .option('--clip <x>', 'clip the global gradient norm (0 = off)', num('--clip', 0), 1)
    .option('--seed <n>', 'seed for the data order and the adapter init', int('--seed', 0), 1),
).action(async (o) => runFinetune(o, await backendFrom(o)));

program
  .command('merge')
  .description('fold a LoRA adapter into its base model: W + (alpha/rank)·B·A, written as a plain f32 GGUF')
  .argument('<base>', 'base model: GGUF, llama2.c .bin, or a Hugging Face directory')
  .argument('<adapter>', 'LoRA adapter GGUF (from stlm finetune --lora, or llama.cpp\'s convert_lora_to_gguf.py)')
  .argument('<out>', 'output GGUF file')
  .option('--tokenizer <file>', 'tokenizer file for models without one inside')
  .action(async (base, adapter, out, o) => runMerge(base, adapter, out, o));

backendOpts(
  program
    .command('synth')
    .description('sample a text corpus from a teacher (a local model file or an OpenAI-compatible endpoint) for sequence-level distillation; train the student on it with stlm train --data <file> (a folder of text files mixes it with real data)')
    .option('--teacher <model>', 'local teacher: GGUF (quantized ones run quantized), llama2.c .bin, or a Hugging Face directory')
    .option('--tokenizer <file>', 'tokenizer file for a --teacher without one inside')
    .option('--endpoint <url>', 'remote teacher: an OpenAI-compatible API base, e.g. http://localhost:8080/v1 (POST <url>/completions)')
    .option('--endpoint-model <name>', 'the model name sent to --endpoint')
    .option('--api-key-env <var>', 'send the API key in this environment variable (Authorization: Bearer) to --endpoint')
    .requiredOption('--out <file.txt>', 'the corpus to write: each sample is prompt + completion, then a blank line')
    .requiredOption('--bytes <n>', 'stop when the corpus holds at least this many bytes', int('--bytes', 1))
    .option('--prompts <file>', 'prompts, one per line (used in order, cycled; blank lines skipped)')
    .option('--seed-text <file>', 'draw each prompt as the first 1-4 words of a random line of this text (default without --prompts: empty prompts, from BOS)')
    .option('--max-tokens <n>', 'tokens per completion', int('--max-tokens', 1), 256)
    .option('--temperature <t>', 'sampling temperature (0 = greedy; 1 = the teacher\'s own distribution)', num('--temperature', 0), 1)
    .option('--seed <n>', 'seed for the prompt choice; sample i is requested with seed + i', int('--seed', 0), 1)
    .option('--parallel <n>', 'requests in flight at once (for --endpoint; the corpus does not depend on it)', int('--parallel', 1), 1),
).action(async (o) => runSynth(o, () => backendFrom(o)));

program
  .command('route')
  .description('send a prompt through the router a tiers config describes (--explain: show the decision without running anything)')
  .requiredOption('--tiers <file>', 'tiers config (YAML or JSON), e.g. examples/tiers.yaml')
  .argument('<prompt>', 'the prompt')
  .option('--explain', 'print which tier would answer and why, running no model', false)
  .option('--json', 'print the decision as JSON', false)
  .option('--max-tokens <n>', 'tokens to generate', int('--max-tokens', 0), 128)
  .option('--temperature <t>', '0 = greedy', num('--temperature', 0), 0.8)
  .option('--seed <n>', 'sampling seed', int('--seed', 0), 1)
  .option('--max-latency-ms <ms>', 'skip tiers slower than this (declared latencyMs)', num('--max-latency-ms', 0))
  .option('--max-cost <usd>', 'skip tiers whose estimated cost is over this (US dollars)', num('--max-cost', 0))
  .option('--min-quality <q>', 'skip tiers whose declared quality is under this (0..1)', num('--min-quality', 0, 1))
  .option('--memory-budget <bytes>', 'skip tiers that need more memory than this', num('--memory-budget', 0))
  .option('--offline', 'only tiers that run on this machine', false)
  .action(async (prompt, o) => runRoute(prompt, o));

program
  .command('route-learn')
  .description("fit the cascade's learned escalation model for a tier: both it and the next tier score multiple-choice items with known answers; writes the model a tiers config names as the tier's `escalation:`")
  .requiredOption('--tiers <file>', 'tiers config (YAML or JSON)')
  .requiredOption('--items <path>', 'multiple-choice task files or a folder of them (as `stlm eval tasks` reads: BLiMP, llm-foundry, HellaSwag)')
  .requiredOption('--out <file>', 'where to write the escalation model (JSON)')
  .option('--weak <tier>', 'the tier that answers first (default: the first in router.order, else in the file)')
  .option('--strong <tier>', 'the tier it escalates to (default: the one after --weak)')
  .option('--limit <n>', 'at most this many items per task file', int('--limit', 1))
  .addOption(new Option('--normalize <how>', 'none: rank choices by log-likelihood; bytes: per UTF-8 byte (ARC-style, as the requests will)').choices(['none', 'bytes']).default('none'))
  .option('--folds <n>', 'folds of the cross-fit estimate printed after fitting', int('--folds', 2), 2)
  .option('--json', 'print the summary as JSON', false)
  .action(async (o) => runRouteLearn(o));

function size(name: string) {
  return (v: string): number => {
    try {
      return parseSize(v);
    } catch (e) {
      throw new InvalidArgumentError(`${name}: ${(e as Error).message}`);
    }
  };
}

/** The command line as typed (recorded in bench results). */
const commandLine = () => ['stlm', ...process.argv.slice(2)].map((a) => (/^[\w./:=@,+-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(' ');

/** Flags bench and recommend share: how speed and energy are measured. */
const measureOpts = (c: Command) =>
  c
    .option('--limit <n>', 'at most n items per task file', int('--limit', 1))
    .option('--seed <n>', 'with --limit: a seeded sample of the items instead of the first ones', int('--seed', 0))
    .option('--max-tokens <n>', 'tokens generated per speed run (greedy)', int('--max-tokens', 2), 64)
    .option('--repeats <n>', 'speed runs per tier after a warm-up (medians are reported)', int('--repeats', 1), 3)
    .option('--watts-per-core <w>', 'watts one busy core draws, for the energy estimate (CPU seconds × this)', num('--watts-per-core', 0), 10)
    .option('--usd-per-kwh <x>', 'electricity price, for a local tier\'s estimated cost', num('--usd-per-kwh', 0), 0.15);

measureOpts(
  program
    .command('bench')
    .description('measure every tier of a tiers config on the same work: parameters, file size, peak memory (each local tier in a process of its own), load time, time to first token, prefill and decode speed, bits per byte, task accuracy, energy per token (an estimate) and cost; a markdown table, JSON, and with --report an HTML page with charts (quality against cost, latency and memory; the Pareto frontier marked)')
    .requiredOption('--tiers <file>', 'tiers config (YAML or JSON), e.g. examples/tiers.yaml')
    .option('--only <names...>', 'measure only these tiers')
    .option('--tasks <paths...>', 'task files or folders (BLiMP, llm-foundry JSONL, HellaSwag pairs), as stlm eval tasks reads them')
    .option('--text <files...>', 'held-out text files for bits per byte (the first --text-bytes of their last 10%)')
    .option('--text-bytes <n>', 'bytes of each text scored', int('--text-bytes', 1), 8192)
    .option('--prompt <text>', 'the prompt of the speed runs (default: a 200-character English passage)')
    .option('--from <bench.json>', 'reuse the figures of an earlier run (its --out) and measure only what it lacks')
    .option('--out <bench.json>', 'write the results as JSON')
    .option('--report <dir>', 'write index.html (tables and charts), bench.json, bench.md and the charts as SVG')
    .option('--title <text>', 'the HTML report\'s title')
    .option('--json', 'print JSON instead of the markdown table', false)
    .option('--in-process', 'measure every tier in this process (faster to start; memory is then not each tier\'s own)', false),
).action(async (o) => runBenchCli(o, commandLine()));

measureOpts(
  program
    .command('recommend')
    .description('the tier that fits your limits, from measurements (an earlier stlm bench --out via --from; what it lacks is measured now): memory here, time to first token, accuracy on your task, offline; says why, or which limit each tier breaks and by how much (exit code 1 when none fits)')
    .requiredOption('--tiers <file>', 'tiers config (YAML or JSON)')
    .requiredOption('--task <path>', 'your task: a task file or folder (accuracy on it is what --min-accuracy limits)')
    .option('--memory <size>', 'most memory a tier may take on this machine, e.g. 256MB, 1.5GB, 300MiB', size('--memory'))
    .option('--latency-ms <ms>', 'longest time to first token', num('--latency-ms', 0))
    .option('--min-accuracy <x>', 'lowest accuracy on --task (0..1)', num('--min-accuracy', 0, 1))
    .option('--offline', 'only tiers that run on this machine (remote ones are not measured)', false)
    .addOption(new Option('--prefer <what>', 'among the tiers that fit: the cheapest per million tokens, or the most accurate').choices(['cost', 'accuracy']).default('cost'))
    .option('--from <bench.json>', 'measurements from stlm bench --out')
    .option('--save <bench.json>', 'write the measurements used (reused and new) as JSON')
    .option('--json', 'print the recommendation as JSON', false),
).action(async (o) => runRecommend(o, commandLine()));

backendOpts(
  program
    .command('serve')
    .description('serve models over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models, /health): a model file (the embedded default model unless --model or --tiers), or every tier of a tiers config plus the router as model "auto"; the playground page (generate and train in the browser) at /')
    .option('--model <file>', 'model: GGUF, llama2.c .bin, or a Hugging Face directory', DEFAULT_MODEL)
    .option('--tiers <file>', 'tiers config (YAML or JSON): serve every tier by name and the router as "auto"')
    .option('--name <id>', 'the model id requests use for --model (default: the file name)')
    .option('--tokenizer <file>', 'tokenizer file for models without one inside')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port (0: any free port)', int('--port', 0), 8080)
    .option('--api-key-env <var>', 'require this environment variable\'s value as the API key (Authorization: Bearer)')
    .option('--queue <n>', 'requests that may wait per model while its slots are taken (more get 429)', int('--queue', 0), 16)
    .option('--slots <n>', 'requests a local model serves at once by continuous batching (1: one at a time)', int('--slots', 1), 32)
    .option('--kv-memory <MiB>', 'memory for one local model\'s KV caches (limits the slots)', int('--kv-memory', 1), 1024)
    .option('--body-limit <bytes>', 'largest request body (more get 413)', int('--body-limit', 1), 1 << 20)
    .option('--log', 'log each request as a JSON line (pino) to stdout', false)
    .option('--cors <origins...>', "origins a browser page may call from (CORS), e.g. http://localhost:5173; '*' for any")
    .option('--no-playground', 'do not serve the playground page at /'),
).action(async (o, cmd: Command) => runServe(o, cmd.getOptionValueSource('model') === 'cli', () => backendFrom(o)));

function readVersion(): string {
  const pkg = fileURLToPath(new URL('../../../package.json', import.meta.url));
  return existsSync(pkg) ? (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version : '0.0.0';
}

// The CLI is an application, so it may turn on relaxed SIMD where the runtime has it behind a flag
// (Node 20): ~20% faster training and prefill (fused multiply-add). STLM_RELAXED_SIMD=0 keeps plain SIMD.
enableRelaxedSimd()
  .then(() => program.parseAsync(process.argv))
  .then(
  () => process.exit(process.exitCode ?? 0),
  (e: unknown) => {
    const err = e as Error;
    process.stderr.write(`stlm: error: ${err?.message ?? String(e)}\n`);
    if (process.env.STLM_DEBUG) process.stderr.write(`${err?.stack}\n`);
    process.exit((err as { exitCode?: number })?.exitCode ?? 1);
  },
);
