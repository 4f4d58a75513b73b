/**
 * The endpoints a test uses to steer and read the provider from another process:
 * `GET /_stats`, `GET /_faults`, `POST /_faults` (replace the plan), `DELETE /_faults` (none).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type FaultPlan, type FaultPlanInput, parseFaultPlan } from './fault-plan.ts';
import { errorAnswer, readJsonBody, send } from './http-io.ts';
import type { ProviderStats } from './stats.ts';

/** What the admin endpoints need from the provider they run in. */
export interface AdminContext {
  stats(): ProviderStats;
  faultPlan(): ReturnType<FaultPlan['describe']>;
  setFaultPlan(plan: FaultPlanInput): void;
}

/** Answers an admin request; `false` if `path` is not an admin endpoint. */
export async function handleAdmin(
  context: AdminContext,
  path: string,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<boolean> {
  if (path === '/_stats' && req.method === 'GET') {
    sendJson(res, context.stats());
    return true;
  }
  if (path !== '/_faults') return false;
  if (req.method === 'GET') {
    sendJson(res, context.faultPlan());
  } else if (req.method === 'DELETE') {
    context.setFaultPlan({ rules: [] });
    sendJson(res, context.faultPlan());
  } else if (req.method === 'POST') {
    const body = await readJsonBody(req);
    const plan = body.ok ? parseFaultPlan(body.value) : body;
    if (plan.ok) {
      context.setFaultPlan(plan.plan);
      sendJson(res, context.faultPlan());
    } else {
      send(
        res,
        'answer' in plan
          ? plan.answer
          : errorAnswer(400, { type: 'invalid_request_error', message: plan.message }),
      );
    }
  } else {
    return false;
  }
  return true;
}

function sendJson(res: ServerResponse, value: unknown): void {
  send(res, { status: 200, body: JSON.stringify(value) });
}
