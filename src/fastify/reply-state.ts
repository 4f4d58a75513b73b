import type { FastifyReply } from 'fastify';
import type { HttpResponseSnapshot } from '../http/index.ts';

/** A reply's status and headers at one moment, to go back to. */
export interface ReplyState {
  status: number;
  headers: Record<string, string | readonly string[]>;
}

/** The headers set on `reply`, lower-case names, values as strings. */
export function headersOf(reply: FastifyReply): Record<string, string | readonly string[]> {
  const headers: Record<string, string | readonly string[]> = {};
  for (const [name, value] of Object.entries(reply.getHeaders())) {
    if (value !== undefined) headers[name] = typeof value === 'number' ? String(value) : value;
  }
  return headers;
}

/** The status and headers of `reply` now (those set by hooks before the handler). */
export function replyStateOf(reply: FastifyReply): ReplyState {
  return { status: reply.statusCode, headers: headersOf(reply) };
}

/**
 * Puts `reply` back as it was before the handler ran: what a rolled-back handler set (its
 * status, `Location`...) must not be part of an error, a replay or a problem.
 */
export function restoreReplyState(reply: FastifyReply, state: ReplyState): void {
  for (const name of Object.keys(reply.getHeaders())) reply.removeHeader(name);
  for (const [name, value] of Object.entries(state.headers)) reply.header(name, value);
  // Only when it changed: Fastify's error handler picks the error's status only while the reply's
  // is unset or 200.
  if (reply.statusCode !== state.status) reply.code(state.status);
}

/** Sends a replay or a problem, bytes as they are (the route's onSend hook lets it through). */
export function sendSnapshot(reply: FastifyReply, response: HttpResponseSnapshot): void {
  reply.code(response.status);
  for (const [name, value] of Object.entries(response.headers)) reply.header(name, value);
  const body = Buffer.from(response.body.buffer, response.body.byteOffset, response.body.length);
  // An empty body without a content type was sent as no payload: so is its replay (a Buffer
  // would gain `application/octet-stream`).
  if (body.length === 0 && !reply.hasHeader('content-type')) reply.send();
  else reply.send(body);
}
