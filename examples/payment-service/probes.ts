import type { LogicalRequest } from './client.ts';

/**
 * Checks the answers the storm never provokes, and that neither writes anything: a missing key
 * (400) and a key reused with another body (422), both as RFC 9457 problem details. Returns what
 * was wrong; empty when all is well.
 */
export async function checkErrorMapping(url: string, used: LogicalRequest): Promise<string[]> {
  const problems: string[] = [];
  const missingKey = await post(url, used.merchantId, undefined, used.body);
  expectProblem(problems, 'missing key', missingKey, 400);
  const otherBody = { ...used.body, amount_cents: used.body.amount_cents + 1 };
  const reused = await post(url, used.merchantId, used.key, otherBody);
  expectProblem(problems, 'reused key', reused, 422);
  return problems;
}

interface Answer {
  status: number;
  contentType: string | null;
  body: Record<string, unknown>;
}

async function post(
  url: string,
  merchantId: string,
  key: string | undefined,
  body: unknown,
): Promise<Answer> {
  const res = await fetch(`${url}/payments`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'merchant-id': merchantId,
      ...(key === undefined ? {} : { 'idempotency-key': key }),
    },
    body: JSON.stringify(body),
  });
  return {
    status: res.status,
    contentType: res.headers.get('content-type'),
    body: (await res.json()) as Record<string, unknown>,
  };
}

function expectProblem(problems: string[], what: string, answer: Answer, status: number): void {
  const { body } = answer;
  const complete = ['type', 'title', 'detail'].every((field) => typeof body[field] === 'string');
  if (
    answer.status !== status ||
    answer.contentType !== 'application/problem+json' ||
    body.status !== status ||
    !complete
  ) {
    problems.push(
      `${what}: expected a ${status} problem, got ${answer.status} ${JSON.stringify(body)}`,
    );
  }
}
