/**
 * The Tiers tab: when the page is served by `stlm serve --tiers`, the router is the model `auto` on
 * /v1/chat/completions; each request's decision (which tier answered, why, cost, latency) comes back in
 * the body's `stlm_route` field. Served anywhere else, the tab says how to get the router.
 */
import cascadeChartUrl from '../../docs/charts/cascade-blimp.svg?url';
import { byId, numberField, showError } from './dom.js';

interface RouteAttempt { tier: string; outcome: string; reason: string; costUsd?: number; latencyMs?: number }
interface RouteDecision { tier: string; reason: string; attempts: RouteAttempt[]; costUsd: number; latencyMs: number }

export async function setupTiersTab(): Promise<void> {
  byId<HTMLImageElement>('cascade-chart').src = cascadeChartUrl;
  const status = byId('tiers-status'), form = byId('tiers-form'), send = byId<HTMLButtonElement>('tiers-send');
  const rows = byId('tiers-table').querySelector('tbody')!;
  const headers = (): Record<string, string> => {
    const key = byId<HTMLInputElement>('tiers-key').value.trim();
    return { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) };
  };

  const noRouter = 'No router here: this tab works when the page is served by `stlm serve --tiers <tiers.yaml>` (the router is its model `auto`).';
  try {
    const res = await fetch('./health');
    const body = res.ok ? ((await res.json()) as { models?: string[] }) : {};
    if (!body.models?.includes('auto')) {
      status.textContent = noRouter;
      return;
    }
    status.textContent = `Router found; tiers: ${body.models.filter((m) => m !== 'auto').join(', ')}.`;
    form.hidden = false;
  } catch {
    status.textContent = noRouter;
    return;
  }

  send.addEventListener('click', async () => {
    let maxTokens: number;
    try {
      maxTokens = numberField('tiers-max-tokens', { integer: true, min: 1 });
    } catch (e) {
      showError('tiers-error', (e as Error).message);
      return;
    }
    showError('tiers-error', '');
    const prompt = byId<HTMLTextAreaElement>('tiers-prompt').value;
    send.disabled = true;
    const t0 = performance.now();
    try {
      const res = await fetch('./v1/chat/completions', {
        method: 'POST', headers: headers(),
        body: JSON.stringify({ model: 'auto', messages: [{ role: 'user', content: prompt }], max_tokens: maxTokens }),
      });
      const body = (await res.json()) as { error?: { message: string }; choices?: { message: { content: string } }[]; stlm_route?: RouteDecision };
      if (!res.ok || body.error) throw new Error(`the server answered ${res.status}: ${body.error?.message ?? res.statusText}`);
      const route = body.stlm_route;
      if (!route) throw new Error('the answer carries no routing decision (stlm_route): is this the router?');
      addRow(rows, prompt, route, performance.now() - t0, body.choices?.[0]?.message.content ?? '');
    } catch (e) {
      showError('tiers-error', `The request failed: ${(e as Error).message}`);
    } finally {
      send.disabled = false;
    }
  });
}

function addRow(tbody: HTMLElement, prompt: string, r: RouteDecision, roundTripMs: number, answer: string): void {
  const tr = document.createElement('tr');
  const tried = r.attempts.filter((a) => a.outcome !== 'skipped').map((a) => `${a.tier}: ${a.outcome}${a.reason ? ` (${a.reason})` : ''}`).join('; ');
  const cells = [
    prompt.length > 40 ? `${prompt.slice(0, 40)}…` : prompt,
    r.tier,
    tried ? `${r.reason}. Tried: ${tried}` : r.reason,
    r.costUsd === 0 ? '0' : r.costUsd.toPrecision(2),
    `${r.latencyMs.toFixed(0)} ms (round trip ${roundTripMs.toFixed(0)} ms)`,
    answer,
  ];
  for (const c of cells) {
    const td = document.createElement('td');
    td.textContent = c;
    tr.append(td);
  }
  tbody.prepend(tr);
}
