-- idempotency-ledger, migration 4: the transactional outbox (idempotency-ledger/outbox).
--
-- Object names are unqualified, as in 00001: apply this file with search_path set to the ledger's
-- schema (migrate() does).
--
-- A message is written by the transaction that makes the change it announces (enqueueMessage), so
-- it exists if and only if that change committed. A relay (createOutboxRelay) publishes it later,
-- at least once, and deletes it once the broker confirmed it.

-- One row per stream: the position of the last message enqueued on it.
--
-- Why a counter row rather than a sequence or an identity column: a sequence hands out numbers
-- when a message is inserted, not when its transaction commits. Transaction A takes 10, B takes
-- 11, B commits first: a relay that reads then publishes 11, and 10 after it, or skips it. Here
-- enqueueMessage increments this row, and the row lock that the UPDATE takes is held until the
-- transaction ends. The next producer of the stream waits for that lock, so it reads the counter
-- only after the previous producer committed (and takes position + 1) or rolled back (and takes
-- the same position again). Within a stream, positions are therefore gap-free and committed in
-- increasing order, and since a commit is visible to new snapshots before its locks are released,
-- any snapshot that sees position n also sees every position below n: a relay reads a prefix of
-- each stream, in the order the producers committed.
--
-- The price: producers of one stream commit one after the other, from their enqueue to their
-- commit. Enqueue at the end of the transaction, and use many streams (one per aggregate: an
-- order, an account) rather than one. Producers of other streams never wait for each other. A
-- transaction that enqueues on several streams should do so in a consistent order (the batch form
-- keeps the caller's order), or two of them can deadlock; Postgres then aborts one.
--
-- A relay that empties a stream deletes its row (only while no producer holds it, only if it
-- still counts the last message deleted, and only while the relay's lease is live), so that
-- streams used once leave nothing behind; the stream's next message starts again at 1, after
-- every earlier one was published.
CREATE TABLE outbox_streams (
  -- COLLATE "C": streams are compared byte for byte, like ledger keys.
  stream text COLLATE "C" NOT NULL,
  last_position bigint NOT NULL,
  CONSTRAINT outbox_streams_pkey PRIMARY KEY (stream)
);

-- The messages waiting to be published. A message is deleted once its publish was confirmed:
-- the table holds the backlog only, so the relay's reads stay small and no cleanup job is needed
-- (the broker and its consumers keep the history).
CREATE TABLE outbox (
  stream text COLLATE "C" NOT NULL,
  position bigint NOT NULL,
  -- Stable across republishes (a relay that crashed after the broker's confirm publishes the
  -- message again): consumers deduplicate on it. Given by the caller, or a random UUID.
  message_id text COLLATE "C" NOT NULL DEFAULT gen_random_uuid()::text,
  topic text NOT NULL,
  -- json rather than jsonb: the payload is published as the exact text that was enqueued.
  payload json NOT NULL,
  headers jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT statement_timestamp(),
  -- Publishes of this message that failed. Only the head of a stream is ever attempted, so only
  -- the head has attempts > 0.
  attempts integer NOT NULL DEFAULT 0,
  -- Not before this time (the backoff after a failed publish).
  next_attempt_at timestamptz NOT NULL DEFAULT statement_timestamp(),
  -- The error of the last failed publish, cut short (its class and message, never the payload).
  last_error text,
  -- Set when the message failed maxAttempts times: its stream is blocked until an operator
  -- releases it (releaseParkedMessage), because publishing the next message would break order.
  parked_at timestamptz,
  -- The relay reads each stream from its lowest position: (stream, position) is its index.
  CONSTRAINT outbox_pkey PRIMARY KEY (stream, position),
  CONSTRAINT outbox_message_id_key UNIQUE (message_id)
);

-- Which claim of a relay publishes a stream, until when (a holder is one claim, never reused). A
-- relay takes a lease in a statement of its own (INSERT ... ON CONFLICT DO UPDATE ... WHERE the
-- lease ran out), publishes without holding any lock or transaction, starts a publish only while
-- its lease lasts longer than the publish may take (renewing it first when it might not), and
-- deletes each message, records a failure or deletes an emptied stream's counter only in a
-- statement that locks its live lease. So two relays do not publish one stream at the same time
-- (short of a publish that reaches the broker after its timeout); a relay that died frees its
-- streams when its lease runs out. A released lease's row stays (expired), so that the next claim
-- updates it; it goes with the stream's counter row once the stream is emptied. This table is
-- separate from outbox_streams on purpose: a relay never waits for a producer's counter lock,
-- nor a producer for a relay.
-- Short statements only: this works through a transaction pooler (PgBouncer transaction mode).
CREATE TABLE outbox_leases (
  stream text COLLATE "C" NOT NULL,
  holder text NOT NULL,
  expires_at timestamptz NOT NULL,
  CONSTRAINT outbox_leases_pkey PRIMARY KEY (stream)
);
