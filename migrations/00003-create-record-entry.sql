-- idempotency-ledger, migration 3: record_entry, the one write of withIdempotency's
-- onConcurrent: 'optimistic'.
--
-- Applied like migration 1, with search_path set to the ledger's schema (migrate() does this).

-- record_entry: called by withIdempotency() with onConcurrent 'optimistic', last in the business
-- transaction, after fn has run: there is no claim before fn, so the entry is inserted once, with
-- its response, and never updated (one write, no dead row version).
--
-- Returns:
--   'recorded'  the entry is inserted (or an expired one taken over in place): commit.
--   'taken'     a live entry holds the key: another transaction committed it first, while fn ran
--               or while this INSERT waited for it. The caller rolls back and replays that entry.
--   'own'       the live entry holding the key was written by this very transaction (a nested
--               call for the same key recorded it inside fn): the caller refuses with a 409.
--   'no_writes' nothing was done: p_only_after_writes is set and this transaction has written
--               nothing yet. A COMMIT or ROLLBACK sent by fn leaves exactly that state (the
--               INSERT would run in a new transaction of its own and commit an entry for writes
--               that were undone), and so does a fn that wrote nothing. The caller tells them
--               apart with a SAVEPOINT (refused outside a transaction block) and calls again with
--               p_only_after_writes false.
--
-- A concurrent transaction holding the key uncommitted (a claim by claim_key, or another
-- record_entry before its COMMIT) makes the INSERT wait for its outcome, at most p_wait_ms: the
-- wait is bounded with lock_timeout, set for the INSERT alone and restored after it, so what runs
-- later in the transaction (deferred triggers at COMMIT) keeps the caller's own. When the wait
-- outlasts it, lock_not_available (55P03) is raised and the transaction aborts. At REPEATABLE READ
-- and SERIALIZABLE, an entry committed after the transaction's snapshot raises a serialization
-- failure (40001) instead of 'taken'; the caller rolls back and looks the entry up.
--
-- A plpgsql function rather than a statement sent as text: its plans are cached per session, and
-- the same logic written as one statement (CTEs to set and restore lock_timeout) cost more to plan
-- on every call than the INSERT itself.
CREATE FUNCTION record_entry(
  p_scope text,
  p_key text,
  p_fingerprint bytea,
  p_response json,
  p_ttl_ms bigint,
  p_wait_ms integer,
  p_only_after_writes boolean
)
RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  previous_lock_timeout text := current_setting('lock_timeout');
  inserted integer;
BEGIN
  IF p_only_after_writes AND pg_current_xact_id_if_assigned() IS NULL THEN
    RETURN 'no_writes';
  END IF;

  PERFORM set_config('lock_timeout', greatest(p_wait_ms, 1) || 'ms', true);
  INSERT INTO ledger AS l (scope, key, fingerprint, response, expires_at)
  VALUES (p_scope, p_key, p_fingerprint, p_response,
          clock_timestamp() + p_ttl_ms * interval '1 millisecond')
  ON CONFLICT ON CONSTRAINT ledger_pkey DO UPDATE
     SET fingerprint = excluded.fingerprint,
         response = excluded.response,
         created_at = excluded.created_at,
         expires_at = excluded.expires_at
   -- Expired: the key is new again, and its row is taken over (judged by the time of the check).
   WHERE l.expires_at <= clock_timestamp();
  GET DIAGNOSTICS inserted = ROW_COUNT;
  PERFORM set_config('lock_timeout', previous_lock_timeout, true);

  IF inserted > 0 THEN
    RETURN 'recorded';
  END IF;
  -- A row this transaction wrote is visible to it; so is one another transaction committed, but
  -- only this transaction's own carry its transaction id.
  IF EXISTS (SELECT 1 FROM ledger
              WHERE scope = p_scope AND key = p_key AND xmin = pg_current_xact_id()::xid) THEN
    RETURN 'own';
  END IF;
  RETURN 'taken';
END;
$$;
