/**
 * `stlm serve [--model <file> | --tiers <config>]`: the OpenAI-compatible server (`src/server/`). A
 * model file (the embedded default model when neither flag is given) is served under its file name (or
 * --name); a tiers config serves every tier by name and the router as `auto`. Prints the URL; runs
 * until SIGINT or SIGTERM, then closes the server and the models.
 */
import type { Backend } from '../kernels/backend.js';
import { createServer } from '../server/server.js';
import { PLAYGROUND_DIR } from '../server/static.js';
import { loadTiersConfig } from '../tiers/config.js';
import { LocalModel } from '../tiers/local.js';
import { routerFromConfig } from '../tiers/open.js';
import type { LanguageModel } from '../tiers/types.js';
import { UsageError } from './route.js';

export interface ServeCliOptions {
  model: string;
  tiers?: string;
  name?: string;
  tokenizer?: string;
  host: string;
  port: number;
  apiKeyEnv?: string;
  queue: number;
  bodyLimit: number;
  log: boolean;
  /** Origins allowed to call from a browser (CORS); '*' for any. */
  cors?: string[];
  /** Serve the playground at / (default true; --no-playground). */
  playground?: boolean;
}

export async function runServe(o: ServeCliOptions, modelGiven: boolean, backend: () => Promise<Backend>): Promise<void> {
  if (o.tiers && modelGiven) throw new UsageError('serve: give --model or --tiers, not both');
  let apiKey: string | undefined;
  if (o.apiKeyEnv !== undefined) {
    apiKey = process.env[o.apiKeyEnv];
    if (!apiKey) throw new UsageError(`serve: --api-key-env ${o.apiKeyEnv}: that environment variable is not set or is empty`);
  }
  const models = new Map<string, LanguageModel>();
  if (o.tiers) {
    let config;
    try {
      config = await loadTiersConfig(o.tiers);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const router = routerFromConfig(config);
    for (const t of router.tiers) {
      if (t.name === 'auto') throw new UsageError(`${o.tiers}: a tier is named 'auto', the name the router is served under; rename it`);
      models.set(t.name, t.model);
    }
    models.set('auto', router);
  } else {
    const m = await LocalModel.open(o.model, { tokenizer: o.tokenizer, backend: await backend(), name: o.name });
    models.set(m.name, m);
  }
  const app = createServer({ models, apiKey, queueLimit: o.queue, bodyLimit: o.bodyLimit, logger: o.log, cors: o.cors, playground: o.playground === false ? undefined : PLAYGROUND_DIR });
  try {
    await app.listen({ host: o.host, port: o.port });
  } catch (e) {
    await Promise.all([...new Set(models.values())].map((m) => m.close()));
    throw new UsageError(`serve: cannot listen on ${o.host}:${o.port}: ${(e as Error).message}`);
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  process.stdout.write(`stlm serve: http://${host}:${port}/v1 (models: ${[...models.keys()].join(', ')})${apiKey ? ', API key required' : ''}\n`);
  if (o.playground !== false) process.stdout.write(`playground: http://${host}:${port}/\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await app.close();
  await Promise.all([...new Set(models.values())].map((m) => m.close()));
}
