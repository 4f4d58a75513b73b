-- idempotency-ledger, migration 1: the ledger table and the functions that claim and expire keys.
--
-- Object names are unqualified on purpose: apply this file with search_path set to the schema that
-- should hold the ledger (migrate() creates the schema "idempotency" by default and does this for
-- you). With another migration tool:
--
--   CREATE SCHEMA IF NOT EXISTS idempotency;
--   SET search_path TO idempotency;
--   \i 00001-create-ledger.sql
--
-- The functions capture that search_path (SET search_path FROM CURRENT), so they find their table
-- whatever the caller's search_path is.

-- One row per (scope, key) whose transaction committed. A row is inserted by the same transaction
-- as the business write it stands for, so a row that other sessions can see is always complete:
-- there is no "in progress" state to get stuck in. Until it commits, the row's entry in the primary
-- key makes any concurrent insert of the same (scope, key) wait for the outcome.
CREATE TABLE ledger (
  -- COLLATE "C": keys are compared byte for byte, and btree comparisons skip locale rules.
  scope text COLLATE "C" NOT NULL,
  key text COLLATE "C" NOT NULL,
  -- SHA-256 of the request's canonical JSON; NULL when the caller gave no request.
  fingerprint bytea,
  -- The response as the exact JSON text that was returned; NULL when fn returned undefined.
  -- json rather than jsonb: jsonb reorders object keys, and a replay must equal the first response.
  response json,
  created_at timestamptz NOT NULL DEFAULT statement_timestamp(),
  expires_at timestamptz NOT NULL,
  CONSTRAINT ledger_pkey PRIMARY KEY (scope, key)
);

-- Serves cleanup: expired rows are found in expiry order without scanning live ones.
CREATE INDEX ledger_expires_at_idx ON ledger (expires_at);

-- claim_key: called by withIdempotency() inside the business transaction, before fn runs.
--
-- Returns one row: claimed = true when this transaction now owns the key (fn may run), or
-- claimed = false with the live entry that a committed transaction already recorded (replay it).
--
-- Why two executions cannot get through: the INSERT places this transaction's (scope, key) in the
-- primary key. A concurrent INSERT of the same (scope, key) finds that uncommitted index entry and
-- waits for this transaction to end (a lock wait on its transaction id). If it commits, the waiter
-- sees the conflict and reads the committed row; if it rolls back, the waiter's INSERT proceeds.
-- This holds at every isolation level; at READ COMMITTED each statement below takes a fresh
-- snapshot, so the SELECT after a wait sees the row the other transaction just committed (at
-- REPEATABLE READ and SERIALIZABLE Postgres raises a serialization failure instead, which
-- withIdempotency retries when it owns the transaction).
--
-- Expiry is compared with clock_timestamp(), the time of the check itself: a duplicate that waited
-- must judge the entry the other transaction just committed by the time it sees it, not by the
-- time it started waiting. recordResponse() sets expires_at when the response is stored.
--
-- p_wait_ms is the time this call may spend waiting, in all (onConcurrent 'wait': waitTimeoutMs;
-- 'reject': 1 ms). Each statement that may wait gets what is left of it as lock_timeout, but at
-- least 1 ms (so a rare further pass of the loop may add up to 1 ms), set here rather than with a
-- separate SET statement to spare a round trip, and restored before returning, so the caller's
-- own statements keep their lock_timeout. When a wait outlasts it, lock_not_available (55P03) is
-- raised and the transaction aborts: nothing was written.
CREATE FUNCTION claim_key(
  p_scope text,
  p_key text,
  p_fingerprint bytea,
  p_ttl_ms bigint,
  p_wait_ms integer
)
RETURNS TABLE (claimed boolean, fingerprint bytea, response text)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  previous_lock_timeout text := current_setting('lock_timeout');
  deadline timestamptz := clock_timestamp() + p_wait_ms * interval '1 millisecond';
  existing record;
  won boolean := false;
BEGIN
  LOOP
    PERFORM set_config('lock_timeout', wait_budget(deadline), true);
    INSERT INTO ledger (scope, key, fingerprint, expires_at)
    VALUES (p_scope, p_key, p_fingerprint, clock_timestamp() + p_ttl_ms * interval '1 millisecond')
    ON CONFLICT ON CONSTRAINT ledger_pkey DO NOTHING;
    IF FOUND THEN
      won := true;
      EXIT;
    END IF;

    SELECT l.fingerprint, l.response, l.expires_at > clock_timestamp() AS live
      INTO existing
      FROM ledger l
     WHERE l.scope = p_scope AND l.key = p_key;
    EXIT WHEN FOUND AND existing.live;

    IF FOUND THEN
      -- Expired: the key is new again. Take the row over; if another transaction is doing the same,
      -- this UPDATE waits for it and then re-checks expires_at against the row it left behind.
      PERFORM set_config('lock_timeout', wait_budget(deadline), true);
      UPDATE ledger l
         SET fingerprint = p_fingerprint,
             response = NULL,
             created_at = clock_timestamp(),
             expires_at = clock_timestamp() + p_ttl_ms * interval '1 millisecond'
       WHERE l.scope = p_scope AND l.key = p_key AND l.expires_at <= clock_timestamp();
      IF FOUND THEN
        won := true;
        EXIT;
      END IF;
    END IF;
    -- The row was deleted by cleanup or taken over by another transaction since we looked: look
    -- again. Each pass follows another transaction's commit, so this does not spin.
  END LOOP;

  PERFORM set_config('lock_timeout', previous_lock_timeout, true);
  IF won THEN
    RETURN QUERY SELECT true, NULL::bytea, NULL::text;
  ELSE
    RETURN QUERY SELECT false, existing.fingerprint, existing.response::text;
  END IF;
END;
$$;

-- wait_budget: what is left until p_deadline, as a lock_timeout value; 1 ms once nothing is left
-- (lock_timeout = 0 would mean "wait forever"). It never fails by itself: a statement whose budget
-- ran out before it could even start (its backend was descheduled, say) still goes ahead when
-- nothing blocks it, so a key that no one else holds is claimed however late; only a lock wait
-- longer than the budget raises lock_not_available.
CREATE FUNCTION wait_budget(p_deadline timestamptz)
RETURNS text
LANGUAGE sql
AS $$
  SELECT greatest(1, ceil(extract(epoch FROM p_deadline - clock_timestamp()) * 1000))::bigint || 'ms';
$$;

-- delete_expired: deletes up to p_batch_size expired entries and returns how many it deleted.
-- Rows locked by a live transaction (one that is taking over an expired key) are skipped rather
-- than waited for, so cleanup never waits for live traffic; a live entry is never deleted because
-- the DELETE re-checks expires_at on the row it locked. The other way round, a call for a key whose
-- expired row this statement is deleting waits for this statement to commit: keep batches small.
-- Suitable for pg_cron: SELECT cron.schedule('idempotency-cleanup', '* * * * *',
--   'SELECT idempotency.delete_expired(10000)');
CREATE FUNCTION delete_expired(p_batch_size integer)
RETURNS integer
LANGUAGE sql
SET search_path FROM CURRENT
-- A batch never waits long for a table lock (a DDL statement, a VACUUM FULL): it fails, and the
-- next tick tries again, rather than hanging a scheduler's stop() behind it.
SET lock_timeout = '5s'
AS $$
  WITH deleted AS (
    DELETE FROM ledger
     WHERE ctid = ANY (ARRAY(
             SELECT ctid
               FROM ledger
              WHERE expires_at <= statement_timestamp()
              LIMIT p_batch_size
                FOR UPDATE SKIP LOCKED))
       AND expires_at <= statement_timestamp()
    RETURNING 1
  )
  SELECT count(*)::integer FROM deleted;
$$;
