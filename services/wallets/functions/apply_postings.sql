-- requires: wallets/announce_balances_changed
-- The statement trigger that moves balances: once per inserting statement
-- (not per row), move the accounts by the new postings, then refuse the whole
-- statement if a transaction does not balance, names a missing transaction, or
-- a posting names a missing account or another asset than its account's. The
-- CHECK constraints of accounts refuse a balance below zero during the UPDATE.
-- Then announce the user accounts it moved (balances_changed through the
-- outbox, announce_balances_changed.sql), from the rows the UPDATE returns.
-- The accounts are found through the primary key (the planner has no
-- statistics for a transition table); the per-(transaction, asset) sums serve
-- both the balance check and the existence check of the transactions.
CREATE OR REPLACE FUNCTION wallets.apply_postings() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    unbalanced text;
    unknown_transaction bigint;
    expected bigint;
    updated bigint;
    changes jsonb;
BEGIN
    WITH deltas AS (
        SELECT account_id, asset,
               coalesce(sum(amount) FILTER (WHERE bucket = 'available'), 0) AS available,
               coalesce(sum(amount) FILTER (WHERE bucket = 'locked'), 0) AS locked
          FROM new_postings
         GROUP BY account_id, asset
    ), moved AS (
        UPDATE wallets.accounts a
           SET available = a.available + d.available,
               locked = a.locked + d.locked
          FROM deltas d
         WHERE a.id = ANY (ARRAY(SELECT account_id FROM deltas))  -- through the primary key
           AND a.id = d.account_id AND a.asset = d.asset
        RETURNING a.owner, a.asset, a.kind
    ), sums AS MATERIALIZED (
        SELECT transaction_id, asset, sum(amount) AS total
          FROM new_postings
         GROUP BY transaction_id, asset
    )
    SELECT (SELECT format('transaction %s does not balance in %s (sum %s)',
                          transaction_id, asset, total)
              FROM sums WHERE total <> 0 LIMIT 1),
           -- one primary-key probe per transaction (LATERAL ... LIMIT 1): a
           -- plan cached from a large first statement (a settlement batch, a
           -- group of holds) would otherwise keep a hash anti join over a
           -- sequential scan of the whole journal for every later statement
           (SELECT s.transaction_id
              FROM sums s
              LEFT JOIN LATERAL (SELECT t.id FROM wallets.transactions t
                                  WHERE t.id = s.transaction_id LIMIT 1) t ON true
             WHERE t.id IS NULL
             LIMIT 1),
           (SELECT count(*) FROM deltas),
           (SELECT count(*) FROM moved),
           -- one row per account moved (deltas are per account): no DISTINCT;
           -- each {user, asset} from a row (a quarter less than building
           -- every object with jsonb_build_object)
           (SELECT jsonb_agg(c ORDER BY c."user", c.asset)
              FROM (SELECT owner AS "user", asset FROM moved WHERE kind = 'user') c)
      INTO unbalanced, unknown_transaction, expected, updated, changes;

    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'UNBALANCED_TRANSACTION: %', unbalanced
              USING ERRCODE = 'check_violation', CONSTRAINT = 'postings_balance_per_asset';
    END IF;
    IF unknown_transaction IS NOT NULL THEN
        RAISE EXCEPTION 'UNKNOWN_TRANSACTION: postings name transaction %, which does not exist',
              unknown_transaction
              USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'postings_transaction_exists';
    END IF;
    IF updated <> expected THEN
        RAISE EXCEPTION 'POSTING_ACCOUNT_MISMATCH: a posting names a missing account or another asset than its account''s'
              USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'postings_account_exists';
    END IF;
    PERFORM wallets.announce_balances_changed(changes);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER postings_apply AFTER INSERT ON wallets.postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION wallets.apply_postings();
