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
-- record_entry before its COMMIT) makes the INSERT wait for its outcome. p_wait_ms bounds the
-- waits in all, as claim_key's: each statement that may wait gets what is left of it as
-- lock_timeout (wait_budget, migration 1), restored before returning, so what runs later in the
-- transaction (deferred triggers at COMMIT) keeps the caller's own. When a wait outlasts it,
-- lock_not_available (55P03) is raised and the transaction aborts. At REPEATABLE READ and
-- SERIALIZABLE, an entry committed after the transaction's snapshot raises a serialization
-- failure (40001) instead of 'taken'; the caller rolls back and looks the entry up.
--
-- ON CONFLICT DO NOTHING, then a read, rather than ON CONFLICT DO UPDATE: DO UPDATE locks the
-- live row it does not update, so the duplicates of a hot key would queue on that row lock one
-- after another, each writing the lock to the WAL, only to roll back.
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
  deadline timestamptz := clock_timestamp() + p_wait_ms * interval '1 millisecond';
  existing record;
  outcome text;
BEGIN
  IF p_only_after_writes AND pg_current_xact_id_if_assigned() IS NULL THEN
    RETURN 'no_writes';
  END IF;

  LOOP
    PERFORM set_config('lock_timeout', wait_budget(deadline), true);
    INSERT INTO ledger (scope, key, fingerprint, response, expires_at)
    VALUES (p_scope, p_key, p_fingerprint, p_response,
            clock_timestamp() + p_ttl_ms * interval '1 millisecond')
    ON CONFLICT ON CONSTRAINT ledger_pkey DO NOTHING;
    IF FOUND THEN
      outcome := 'recorded';
      EXIT;
    END IF;

    -- A row this transaction wrote is visible to it; so is one another transaction committed,
    -- but only this transaction's own carry its transaction id (one written in a subtransaction,
    -- a savepoint, carries the subtransaction's, and reads as another's). A transaction that has
    -- written nothing owns no row: it is not given an id for the comparison.
    SELECT l.xmin = pg_current_xact_id_if_assigned()::xid AS own, l.expires_at > clock_timestamp() AS live
      INTO existing
      FROM ledger l
     WHERE l.scope = p_scope AND l.key = p_key;
    IF FOUND AND existing.own IS TRUE THEN
      outcome := 'own';
      EXIT;
    END IF;
    IF FOUND AND existing.live THEN
      outcome := 'taken';
      EXIT;
    END IF;

    IF FOUND THEN
      -- Expired: the key is new again. Take the row over; if another transaction is doing the
      -- same, this UPDATE waits for it and then re-checks expires_at against what it left.
      PERFORM set_config('lock_timeout', wait_budget(deadline), true);
      UPDATE ledger l
         SET fingerprint = p_fingerprint,
             response = p_response,
             created_at = clock_timestamp(),
             expires_at = clock_timestamp() + p_ttl_ms * interval '1 millisecond'
       WHERE l.scope = p_scope AND l.key = p_key AND l.expires_at <= clock_timestamp();
      IF FOUND THEN
        outcome := 'recorded';
        EXIT;
      END IF;
    END IF;
    -- Deleted by cleanup, or taken over by another transaction, since the INSERT: again. Each
    -- pass follows another transaction's commit, so this does not spin.
  END LOOP;

  PERFORM set_config('lock_timeout', previous_lock_timeout, true);
  RETURN outcome;
END;
$$;
