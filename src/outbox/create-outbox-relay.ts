import { setTimeout as sleep } from 'node:timers/promises';
import { type DueStreamCursor, dueStreamCursor } from './due-stream-cursor.ts';
import {
  type AnyKysely,
  deleteIdleCounter,
  readStream,
  recordFailure,
  type StoredMessage,
} from './outbox-store.ts';
import {
  type OutboxMessage,
  type OutboxRelayOptions,
  type ResolvedRelayOptions,
  resolveRelayOptions,
} from './relay-options.ts';
import { type StreamLease, streamLease } from './stream-lease.ts';

/** What one pass of the relay did. */
export interface RelayResult {
  /** Streams this pass took and worked on. */
  streams: number;
  /** Messages published and deleted. */
  published: number;
  /** Publishes that failed (each message is retried after its backoff, or parked). */
  failed: number;
  /** Messages parked by this pass (they failed `maxAttempts` times). */
  parked: number;
}

/** A relay made by {@link createOutboxRelay}. */
export interface OutboxRelay {
  /**
   * One pass: takes up to 4 × `concurrency` streams that have messages due (going round the
   * streams, from where the previous pass stopped), publishes up to `batchSize` of each.
   */
  relayOnce(): Promise<RelayResult>;
  /** Runs passes until `stop()` (or the signal): at once after a busy pass, else every `pollIntervalMs`. */
  start(): void;
  /** Stops after the publishes in flight are confirmed and recorded; resolves then. */
  stop(): Promise<void>;
}

/** The longest error text kept in `last_error`. */
const MAX_ERROR_LENGTH = 500;

/**
 * Publishes the outbox's messages: at least once each, a message deleted only after `publish`
 * resolved; within a stream one at a time, in position (commit) order, a failing message holding
 * back the rest of its stream (order over progress) while other streams go on. Run as many relays
 * as you like: each stream is leased to one of them at a time (see `leaseMs`), and no lock or
 * transaction is held while publishing. A relay that dies after the broker confirmed a message but
 * before deleting it: the message is published again with the same id, and consumers deduplicate.
 *
 * @throws {InvalidIdempotencyOptionsError} for invalid options.
 *
 * @example
 * ```ts
 * const channel = await connection.createConfirmChannel();
 * const relay = createOutboxRelay(db, { publish: amqpPublisher(channel, { exchange: 'events' }) });
 * relay.start();
 * process.once('SIGTERM', () => void relay.stop().then(() => db.destroy()));
 * ```
 */
export function createOutboxRelay(db: AnyKysely, options: OutboxRelayOptions): OutboxRelay {
  const resolved = resolveRelayOptions(options);
  const stopping = new AbortController();
  // Where the next pass looks for due streams: passes go round the streams, each from where the
  // previous one stopped.
  const dueStreams = dueStreamCursor(db, resolved.schema);
  let running: Promise<void> | undefined;
  // Passes in flight, from start() or from direct calls: stop() waits for all of them.
  const passes = new Set<Promise<unknown>>();

  const relayOnce = () => {
    const pass = runPass(db, resolved, dueStreams, stopping.signal);
    const settled = pass.catch(() => undefined);
    passes.add(settled);
    void settled.then(() => passes.delete(settled));
    return pass;
  };
  const stop = async () => {
    stopping.abort();
    await running;
    await Promise.all(passes);
  };
  if (resolved.signal?.aborted) stopping.abort();
  resolved.signal?.addEventListener('abort', () => void stop(), { once: true });

  return {
    relayOnce,
    start() {
      if (running !== undefined || stopping.signal.aborted) return;
      running = loop(resolved, relayOnce, stopping.signal);
    },
    stop,
  };
}

async function loop(
  options: ResolvedRelayOptions,
  relayOnce: () => Promise<RelayResult>,
  signal: AbortSignal,
): Promise<void> {
  while (!signal.aborted) {
    let busy = false;
    try {
      const result = await relayOnce();
      busy = result.published > 0;
    } catch (error) {
      // The database may come back: the next pass tries again.
      report(options, error, undefined);
    }
    if (!busy) await sleep(options.pollIntervalMs, undefined, { signal }).catch(() => undefined);
  }
}

async function runPass(
  db: AnyKysely,
  options: ResolvedRelayOptions,
  dueStreams: DueStreamCursor,
  signal: AbortSignal,
): Promise<RelayResult> {
  const result: RelayResult = { streams: 0, published: 0, failed: 0, parked: 0 };
  if (signal.aborted) return result;
  // More candidates than workers: other relays may take some of them first.
  const candidates = await dueStreams.next(options.concurrency * 4);
  const worker = async () => {
    for (let stream = candidates.shift(); stream !== undefined; stream = candidates.shift()) {
      if (signal.aborted) return;
      // A holder per claim, not per relay: two passes of one relay (start() and a direct
      // relayOnce()) are two holders, and never publish one stream at once.
      const lease = streamLease(db, options, stream);
      if (!(await lease.claim())) continue;
      result.streams += 1;
      try {
        await relayStream(db, options, lease, stream, result, signal);
      } finally {
        // A failure here (the database gone) leaves the lease to run out.
        await lease.release().catch(() => undefined);
      }
    }
  };
  // Every worker ends before the pass does, even when one fails: stop() relies on it.
  const settled = await Promise.allSettled(Array.from({ length: options.concurrency }, worker));
  const failed = settled.find((outcome) => outcome.status === 'rejected');
  if (failed) throw failed.reason;
  return result;
}

/** Publishes up to `batchSize` messages of a stream this relay holds, in order, stopping at a failure. */
async function relayStream(
  db: AnyKysely,
  options: ResolvedRelayOptions,
  lease: StreamLease,
  stream: string,
  result: RelayResult,
  signal: AbortSignal,
): Promise<void> {
  const { schema, leaseMs } = options;
  const { holder } = lease;
  const messages = await readStream(db, schema, stream, options.batchSize);
  for (const stored of messages) {
    // Only the head can be parked or backing off; either way the rest of the stream waits.
    if (signal.aborted || stored.parked || !stored.due) return;
    // Publish only under a lease that outlasts the publish (which gives up after
    // publishTimeoutMs): a relay that stalled since it last renewed (a GC pause, a slow network)
    // may have lost the stream to a relay that published this message already.
    if (!(await lease.lastsFor(options.publishTimeoutMs))) return;
    const message = toOutboxMessage(stored);
    try {
      await publishWithin(options, message);
    } catch (error) {
      result.failed += 1;
      report(options, error, message);
      const recorded = await recordFailure(db, schema, stored, {
        holder,
        leaseMs,
        delayMs: retryDelay(options, message.attempt),
        error: describe(error),
        maxAttempts: options.maxAttempts ?? null,
      });
      if (recorded?.parked) result.parked += 1;
      return;
    }
    // Another relay took the stream over (this one outlived its lease): it publishes the rest.
    if (!(await lease.deletePublished(stored))) return;
    result.published += 1;
  }
  const last = messages.at(-1);
  // Every message read was published: when the counter still reads the last one's position, the
  // stream is empty, whether or not the batch was full.
  if (last !== undefined) {
    await deleteIdleCounter(db, schema, { stream, lastPosition: last.position }, { holder });
  }
}

/** `publish`, failing after `publishTimeoutMs`: a relay gives a stream up before its lease runs out. */
async function publishWithin(options: ResolvedRelayOptions, message: OutboxMessage): Promise<void> {
  const { publishTimeoutMs } = options;
  let timer: NodeJS.Timeout | undefined;
  const publishing = Promise.resolve().then(() => options.publish(message));
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`publish did not settle within ${publishTimeoutMs} ms`)),
      publishTimeoutMs,
    );
  });
  try {
    await Promise.race([publishing, timeout]);
  } finally {
    clearTimeout(timer);
    // A publish that settles after its timeout is of no interest (the message is published again).
    publishing.catch(() => undefined);
  }
}

function toOutboxMessage(stored: StoredMessage): OutboxMessage {
  return {
    messageId: stored.messageId,
    stream: stored.stream,
    position: stored.position,
    topic: stored.topic,
    payload: JSON.parse(stored.payloadText) as unknown,
    headers: stored.headers,
    attempt: stored.attempts + 1,
    createdAt: stored.createdAt,
  };
}

function retryDelay(options: ResolvedRelayOptions, attempt: number): number {
  try {
    const delayMs = options.retryDelayMs(attempt);
    if (Number.isFinite(delayMs) && delayMs >= 0) return Math.round(delayMs);
  } catch {
    // A failing delay function must not leave the failure unrecorded: a fixed backoff instead.
  }
  return 1000;
}

/** The error's class and message, cut short: what an operator needs, and no payload. */
function describe(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return text.length > MAX_ERROR_LENGTH ? `${text.slice(0, MAX_ERROR_LENGTH - 1)}…` : text;
}

function report(options: ResolvedRelayOptions, error: unknown, message: OutboxMessage | undefined) {
  try {
    options.onError?.(error, message);
  } catch {
    // A failing error callback must not stop the relay.
  }
}
