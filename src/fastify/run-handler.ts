import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify';
import type { HttpResponseSnapshot } from '../http/index.ts';
import { UnstorableResponseError } from '../index.ts';
import type { Attempt } from './held-response.ts';
import { payloadBytes } from './payload-bytes.ts';
import { headersOf } from './reply-state.ts';

/**
 * Runs the route's own handler for one attempt and returns its response as the onSend hook
 * received it (serialized, after every other onSend hook), or `undefined` when the handler sent
 * none. The response itself stays held in the hook; `attempt.sendable` is what to release.
 *
 * As in Fastify, the handler sends by returning a value, or by calling `reply.send` (then
 * returning `reply`, or nothing). An error it throws is rethrown, its response (if any) held for
 * good.
 */
export async function runHandler(
  handler: RouteHandlerMethod,
  instance: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
  attempt: Attempt,
  limits: { maxResponseBytes: number; scope: string; key: string },
): Promise<HttpResponseSnapshot | undefined> {
  const send = reply.send;
  // Notes the sends of the handler (and of Fastify's error handling on its behalf).
  const restoreSend = replaceOwn(reply, 'send', function (this: FastifyReply, payload?: unknown) {
    attempt.sendCalled = true;
    return send.call(this, payload);
  });
  try {
    const value = await callHandler(handler, instance, request, reply, attempt);
    if (!attempt.sendCalled && value !== undefined && value !== reply) reply.send(value);
    if (!attempt.sendCalled && !attempt.returnedReply) return undefined;
    if (!(await payloadArrived(attempt, reply.raw))) return undefined;
    const read = await payloadBytes(reply, attempt.payload, limits.maxResponseBytes);
    if (read.overflowed) {
      throw new UnstorableResponseError({
        scope: limits.scope,
        key: limits.key,
        reason: 'too_large',
        message: `The response body is larger than maxResponseBytes (${limits.maxResponseBytes})`,
      });
    }
    // A string or Buffer goes on as it is; a stream was read, so its bytes go instead.
    const payload = attempt.payload;
    attempt.sendable =
      payload == null || typeof payload === 'string' || Buffer.isBuffer(payload)
        ? payload
        : read.body;
    return { status: reply.statusCode, headers: headersOf(reply), body: read.body };
  } finally {
    restoreSend();
  }
}

/** The handler's return value, once its promise (if any) settled. */
async function callHandler(
  handler: RouteHandlerMethod,
  instance: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
  attempt: Attempt,
): Promise<unknown> {
  // An async handler's `return reply` awaits the reply, which Fastify settles once the response
  // is sent: here only after the handler's promise settled. Until then, awaiting it returns at
  // once (and says that the handler sends on its own).
  const restoreThen = replaceOwn(reply, 'then', (fulfilled?: () => void) => {
    attempt.returnedReply = true;
    fulfilled?.();
  });
  try {
    const value: unknown = handler.call(instance, request, reply);
    if (value === reply) attempt.returnedReply = true;
    return value === reply ? value : await value;
  } catch (error) {
    // A response sent before the error is on its way to the hook: it must land there (and stay
    // held) rather than reach the client after the rollback.
    if (attempt.sendCalled) await payloadArrived(attempt, reply.raw);
    throw error;
  } finally {
    restoreThen();
  }
}

/** Sets an own property of `target` until the returned function puts back what was there. */
function replaceOwn(target: object, name: string, value: unknown): () => void {
  const previous = Object.getOwnPropertyDescriptor(target, name);
  Object.defineProperty(target, name, { configurable: true, writable: true, value });
  return () => {
    if (previous) Object.defineProperty(target, name, previous);
    else Reflect.deleteProperty(target, name);
  };
}

/**
 * Waits for the attempt's payload to reach the onSend hook; false if the response closed first
 * (the client went away while a slow onSend hook ran, or Fastify's last-resort error handler
 * wrote to the socket directly).
 */
function payloadArrived(attempt: Attempt, res: ServerResponse): Promise<boolean> {
  if (attempt.arrived) return Promise.resolve(true);
  if (res.writableEnded || res.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onClose = () => resolve(attempt.arrived);
    res.once('close', onClose);
    void attempt.arrival.then(() => {
      res.off('close', onClose);
      resolve(true);
    });
  });
}
