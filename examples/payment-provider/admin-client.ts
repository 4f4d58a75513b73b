/**
 * Steering and reading a provider from another process, over its admin endpoints: what a chaos
 * test uses when the provider is a child it may kill.
 */
import type { FaultPlan, FaultPlanInput } from './fault-plan.ts';
import type { ProviderStats } from './stats.ts';

/**
 * `GET /_stats`: the provider's counters.
 *
 * @example
 * ```ts
 * const stats = await fetchProviderStats(provider.url);
 * stats.keys['order-17-charge']?.charges; // 0 or 1
 * ```
 */
export async function fetchProviderStats(baseUrl: string): Promise<ProviderStats> {
  return (await admin(baseUrl, 'GET', '/_stats')) as ProviderStats;
}

/**
 * `POST /_faults`: replaces the fault plan; resolves with the plan in force.
 *
 * @example
 * ```ts
 * await setProviderFaultPlan(provider.url, {
 *   seed: 7,
 *   rules: [{ fault: { mode: 'charge-then-drop' }, probability: 0.2 }],
 * });
 * ```
 */
export async function setProviderFaultPlan(
  baseUrl: string,
  plan: FaultPlanInput,
): Promise<ReturnType<FaultPlan['describe']>> {
  return (await admin(baseUrl, 'POST', '/_faults', plan)) as ReturnType<FaultPlan['describe']>;
}

/**
 * `DELETE /_faults`: no more faults.
 *
 * @example
 * ```ts
 * await clearProviderFaultPlan(provider.url);
 * ```
 */
export async function clearProviderFaultPlan(baseUrl: string): Promise<void> {
  await admin(baseUrl, 'DELETE', '/_faults');
}

async function admin(
  baseUrl: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const res = await fetch(new URL(path, baseUrl), {
    method,
    ...(body === undefined
      ? {}
      : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${method} ${path} answered ${res.status}: ${text}`);
  return JSON.parse(text);
}
