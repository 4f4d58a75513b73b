-- idempotency-ledger, migration 2: operations, for work with effects outside the database (a
-- payment provider, an email, another service), which one transaction cannot cover.
--
-- Applied like migration 1, with search_path set to the ledger's schema (migrate() does this).
--
-- An operation is one (scope, key) run as a sequence of named steps. Each step commits on its own,
-- with a row in operation_steps: its recovery point, so that a resumed attempt skips it and gets
-- its recorded result. One attempt at a time holds the operation's lease (lease_expires_at, by
-- the database clock) and its fencing token, which grows with every new holder. Every write an
-- attempt commits is fenced: it updates the operation row where fencing_token is still its own,
-- in the same transaction as the step's (or the final response's) business writes, so a holder
-- whose lease was taken over can never commit anything.

CREATE TABLE operations (
  scope text COLLATE "C" NOT NULL,
  key text COLLATE "C" NOT NULL,
  -- The operation's registered name: which code resumes it.
  name text COLLATE "C" NOT NULL,
  -- SHA-256 of the request's canonical JSON, as in the ledger; NULL without a request.
  fingerprint bytea,
  -- The request itself, so that an abandoned operation can be resumed without its client.
  request json,
  state text NOT NULL DEFAULT 'in_progress'
    CONSTRAINT operations_state_check CHECK (state IN ('in_progress', 'finished')),
  fencing_token bigint NOT NULL DEFAULT 1,
  -- Until when the current holder may work; NULL when no one holds it (released, or finished).
  lease_expires_at timestamptz,
  -- Attempts that acquired the operation, the first included.
  attempts integer NOT NULL DEFAULT 1,
  -- The final response, as the exact JSON text returned; set when the operation finishes.
  response json,
  created_at timestamptz NOT NULL DEFAULT statement_timestamp(),
  updated_at timestamptz NOT NULL DEFAULT statement_timestamp(),
  -- When a finished operation stops replaying; NULL while in progress: an unfinished operation
  -- may have had effects, so it is never deleted by expiry, only resumed or released.
  expires_at timestamptz,
  -- How long it replays once finished (the first attempt's ttlMs): whichever attempt finishes it
  -- (a client's retry, the completer) keeps it that long.
  ttl_ms bigint NOT NULL,
  CONSTRAINT operations_pkey PRIMARY KEY (scope, key)
);

-- Serves the completer: in-progress operations by lease expiry, without scanning finished ones.
CREATE INDEX operations_resumable_idx ON operations (lease_expires_at) WHERE state = 'in_progress';
-- Serves cleanup, as ledger_expires_at_idx does.
CREATE INDEX operations_expires_at_idx ON operations (expires_at);

CREATE TABLE operation_steps (
  scope text COLLATE "C" NOT NULL,
  key text COLLATE "C" NOT NULL,
  step text COLLATE "C" NOT NULL,
  -- The step's result, as the exact JSON text; NULL for a step that returned nothing.
  result json,
  -- The holder that recorded it.
  fencing_token bigint NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT statement_timestamp(),
  CONSTRAINT operation_steps_pkey PRIMARY KEY (scope, key, step),
  CONSTRAINT operation_steps_operation_fkey FOREIGN KEY (scope, key)
    REFERENCES operations (scope, key) ON DELETE CASCADE
);

-- acquire_operation: called by an attempt before it runs. One row:
--   outcome 'acquired': this attempt now holds the operation (fencing_token is its token;
--     resumed = true when an earlier attempt left steps behind), lease until now + p_lease_ms;
--   outcome 'finished': it finished; response is its final response (replay it);
--   outcome 'held': another attempt holds a live lease; lease_remaining_ms says for how long;
--   outcome 'mismatch': the key was used with another request (fingerprint differs).
-- A finished operation past expires_at is new again: its row and steps are taken over.
-- It waits for the row's lock (a holder between its fenced write and COMMIT, or a concurrent
-- acquire) at most p_wait_ms: then lock_not_available (55P03), which the caller reports as held.
-- The lock_timeout it sets is its own: the SET clause restores the caller's on the way out.
--
-- Why two attempts cannot both hold it: the INSERT and the takeover UPDATE both lock the row; a
-- concurrent takeover waits for the first, then re-checks the lease against the row it left, so
-- it finds the lease live and reports 'held'. The token grows on every takeover, and fenced
-- writes compare it in the same transaction as their business writes.
CREATE FUNCTION acquire_operation(
  p_scope text,
  p_key text,
  p_name text,
  p_fingerprint bytea,
  p_request json,
  p_lease_ms bigint,
  p_wait_ms bigint,
  p_ttl_ms bigint
)
RETURNS TABLE (
  outcome text,
  fencing_token bigint,
  resumed boolean,
  response text,
  lease_remaining_ms double precision
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET lock_timeout = '5s'
AS $$
DECLARE
  current record;
  token bigint;
BEGIN
  -- 0 would mean "wait for ever".
  PERFORM set_config('lock_timeout', greatest(p_wait_ms, 1)::text || 'ms', true);
  -- A finished operation is replayed (or its key refused) from a plain read: no row lock, so no
  -- WAL, no transaction id and no queue behind other replays of the key. A finished row does not
  -- change until it expires, so this read sees what a locked one would.
  SELECT o.fingerprint, o.response::text AS response
    INTO current
    FROM operations o
   WHERE o.scope = p_scope AND o.key = p_key
     AND o.state = 'finished' AND o.expires_at > clock_timestamp();
  IF FOUND THEN
    IF current.fingerprint IS DISTINCT FROM p_fingerprint THEN
      RETURN QUERY SELECT 'mismatch'::text, NULL::bigint, false, NULL::text, NULL::double precision;
    ELSE
      RETURN QUERY SELECT 'finished'::text, NULL::bigint, false, current.response, NULL::double precision;
    END IF;
    RETURN;
  END IF;

  LOOP
    INSERT INTO operations (scope, key, name, fingerprint, request, lease_expires_at, ttl_ms)
    VALUES (p_scope, p_key, p_name, p_fingerprint, p_request,
            clock_timestamp() + p_lease_ms * interval '1 millisecond', p_ttl_ms)
    ON CONFLICT ON CONSTRAINT operations_pkey DO NOTHING
    RETURNING operations.fencing_token INTO token;
    IF FOUND THEN
      RETURN QUERY SELECT 'acquired'::text, token, false, NULL::text, NULL::double precision;
      RETURN;
    END IF;

    SELECT o.state, o.fingerprint, o.response::text AS response,
           o.expires_at <= clock_timestamp() AS expired,
           o.lease_expires_at IS NULL OR o.lease_expires_at <= clock_timestamp() AS free,
           (extract(epoch FROM o.lease_expires_at - clock_timestamp()) * 1000)::double precision
             AS remaining
      INTO current
      FROM operations o
     WHERE o.scope = p_scope AND o.key = p_key
       FOR UPDATE;
    IF NOT FOUND THEN
      -- Deleted by cleanup since the INSERT looked: try again.
      CONTINUE;
    END IF;

    IF current.state = 'finished' AND current.expired THEN
      -- Expired: the key is new again.
      DELETE FROM operation_steps s WHERE s.scope = p_scope AND s.key = p_key;
      UPDATE operations o
         SET name = p_name, fingerprint = p_fingerprint, request = p_request,
             state = 'in_progress', fencing_token = o.fencing_token + 1, attempts = 1,
             lease_expires_at = clock_timestamp() + p_lease_ms * interval '1 millisecond',
             response = NULL, created_at = clock_timestamp(), updated_at = clock_timestamp(),
             expires_at = NULL, ttl_ms = p_ttl_ms
       WHERE o.scope = p_scope AND o.key = p_key
      RETURNING o.fencing_token INTO token;
      RETURN QUERY SELECT 'acquired'::text, token, false, NULL::text, NULL::double precision;
      RETURN;
    END IF;

    IF current.fingerprint IS DISTINCT FROM p_fingerprint THEN
      RETURN QUERY SELECT 'mismatch'::text, NULL::bigint, false, NULL::text, NULL::double precision;
      RETURN;
    END IF;

    IF current.state = 'finished' THEN
      RETURN QUERY SELECT 'finished'::text, NULL::bigint, false, current.response, NULL::double precision;
      RETURN;
    END IF;

    IF NOT current.free THEN
      RETURN QUERY SELECT 'held'::text, NULL::bigint, false, NULL::text, current.remaining;
      RETURN;
    END IF;

    -- In progress, and no one holds it: resume it as its next holder.
    UPDATE operations o
       SET fencing_token = o.fencing_token + 1, attempts = o.attempts + 1,
           lease_expires_at = clock_timestamp() + p_lease_ms * interval '1 millisecond',
           updated_at = clock_timestamp()
     WHERE o.scope = p_scope AND o.key = p_key
    RETURNING o.fencing_token INTO token;
    RETURN QUERY SELECT 'acquired'::text, token, true, NULL::text, NULL::double precision;
    RETURN;
  END LOOP;
END;
$$;

-- delete_expired_operations: delete_expired (migration 1) for operations: up to p_batch_size
-- finished operations past their expiry, with their steps (ON DELETE CASCADE). An operation in
-- progress has no expiry and is never deleted here. cleanupExpired() runs both; with pg_cron,
-- schedule both:
--   SELECT cron.schedule('idempotency-operations-cleanup', '* * * * *',
--     'SELECT idempotency.delete_expired_operations(10000)');
CREATE FUNCTION delete_expired_operations(p_batch_size integer)
RETURNS integer
LANGUAGE sql
SET search_path FROM CURRENT
SET lock_timeout = '5s'
AS $$
  WITH deleted AS (
    DELETE FROM operations
     WHERE ctid = ANY (ARRAY(
             SELECT ctid
               FROM operations
              WHERE expires_at <= statement_timestamp()
              LIMIT p_batch_size
                FOR UPDATE SKIP LOCKED))
       AND expires_at <= statement_timestamp()
    RETURNING 1
  )
  SELECT count(*)::integer FROM deleted;
$$;
