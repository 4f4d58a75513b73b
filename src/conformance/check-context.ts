import { randomUUID } from 'node:crypto';
import type { ContractClient, ContractRequest } from './contract-client.ts';
import type { ResolvedContractOptions } from './contract-options.ts';
import type { ContractCheckId } from './contract-report.ts';
import type { ContractResponse } from './contract-response.ts';

/** A check's finding that the server broke the contract; its message is the check's detail. */
export class ContractViolation extends Error {}

/** What a check that did not fail reports. */
export interface CheckOutcome {
  status: 'passed' | 'skipped';
  detail: string;
}

/** One behaviour of the contract, checked against the server. */
export interface ContractCheck {
  id: ContractCheckId;
  name: string;
  run(context: CheckContext): Promise<CheckOutcome>;
}

/** What a check works with; one per check, so its timeout aborts its own requests only. */
export class CheckContext {
  readonly options: ResolvedContractOptions;
  readonly client: ContractClient;
  /** Aborted when the check runs out of time. */
  readonly signal: AbortSignal;
  /** What the check is doing, for the detail of a timeout or an unexpected error. */
  step = 'starting';
  readonly #nextBody: () => number;

  constructor(
    options: ResolvedContractOptions,
    client: ContractClient,
    signal: AbortSignal,
    nextBody: () => number,
  ) {
    this.options = options;
    this.client = client;
    this.signal = signal;
    this.#nextBody = nextBody;
  }

  /** A fresh random key: the kit can run against the same API again and again. */
  newKey(): string {
    return randomUUID();
  }

  /** A body no earlier request of this run used, and its `n`. */
  newBody(): { n: number; body: unknown } {
    const n = this.#nextBody();
    return { n, body: this.options.body(n) };
  }

  /** Sends one request, noting it as the check's current step. */
  send(step: string, request: ContractRequest): Promise<ContractResponse> {
    this.step = step;
    return this.client.send(request, this.signal);
  }

  /** Whether the response is the endpoint's success. */
  isSuccess(response: ContractResponse): boolean {
    const expected = this.options.successStatus;
    return expected === undefined
      ? response.status >= 200 && response.status < 300
      : response.status === expected;
  }

  /** The success status as the details name it. */
  get successText(): string {
    return this.options.successStatus === undefined ? 'a 2xx' : `${this.options.successStatus}`;
  }

  /** Whether the response carries the replay header (always false when there is none to check). */
  isMarkedReplayed(response: ContractResponse): boolean {
    const name = this.options.replayedHeader;
    if (name === false) return false;
    return response.headers[name.toLowerCase()]?.some((v) => v.trim() === 'true') ?? false;
  }

  /** Requires the key's business effects, when the caller can count them, to be `expected`. */
  async expectEffects(key: string, expected: number, what: string): Promise<string> {
    const count = this.options.countEffects;
    if (!count) return '';
    this.step = `counting the effects of ${what}`;
    const effects = await count(key);
    if (effects !== expected) {
      throw new ContractViolation(
        `${what} produced ${effects} effect(s) instead of ${expected} (key ${key})`,
      );
    }
    return `; ${effects} effect${effects === 1 ? '' : 's'}`;
  }
}
