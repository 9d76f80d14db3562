-- apply_postings, the statement trigger that moves balances, found the
-- accounts to update by hash-joining its deltas with a sequential scan of
-- every account: the planner has no statistics for a transition table. That
-- cost grew with the number of users and was paid by every hold. Now the
-- accounts are fetched through the primary key (id = ANY(...)). Same checks,
-- same errors.

CREATE OR REPLACE FUNCTION wallets.apply_postings() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    unbalanced text;
    unknown_transaction bigint;
    expected bigint;
    updated bigint;
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
        RETURNING 1
    )
    SELECT (SELECT format('transaction %s does not balance in %s (sum %s)',
                          transaction_id, asset, sum(amount))
              FROM new_postings
             GROUP BY transaction_id, asset
            HAVING sum(amount) <> 0
             LIMIT 1),
           (SELECT n.transaction_id
              FROM (SELECT DISTINCT transaction_id FROM new_postings) n
             WHERE NOT EXISTS (SELECT 1 FROM wallets.transactions t WHERE t.id = n.transaction_id)
             LIMIT 1),
           (SELECT count(*) FROM deltas),
           (SELECT count(*) FROM moved)
      INTO unbalanced, unknown_transaction, expected, updated;

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
    RETURN NULL;
END;
$$;
