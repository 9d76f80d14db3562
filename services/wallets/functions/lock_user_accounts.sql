-- wallets.lock_user_accounts: row locks on the user accounts of the given
-- (owner, asset) pairs, taken in account id order, for the caller's
-- transaction. Settlement locks accounts in id order; another service that
-- will release or hold on several accounts in one transaction (orders, at the
-- end of its orders) takes its locks through this function first, in the
-- same order, so the two never deadlock, without reading wallets' tables.
-- SECURITY DEFINER: the caller needs EXECUTE on it, no right on the tables.
--
-- Two steps, each an index lookup whatever plan the caller's plan cache
-- mode gives (move_funds_batch forces generic plans, which cannot know the
-- arrays' length): the ids by (owner, asset), one unique-index probe per
-- pair (LATERAL ... LIMIT 1), then the locks by primary key in id order. The
-- one-statement form `(owner, asset) IN (SELECT * FROM unnest(...))` was
-- planned as a hash join over a sequential scan of every account (1.4 ms a
-- call on the order-path bench's 4,000 accounts, the largest nested cost of
-- an accepted batch).
CREATE OR REPLACE FUNCTION wallets.lock_user_accounts(p_owners text[], p_assets text[])
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ids bigint[];
BEGIN
    IF cardinality(p_owners) = 1 THEN
        -- One pair (a hold or release RPC on its own): its one row, locked
        -- by the same unique-index probe, one statement instead of two.
        PERFORM 1 FROM wallets.accounts a
         WHERE a.owner = p_owners[1] AND a.asset = p_assets[1] AND a.kind = 'user'
           FOR UPDATE;
        RETURN;
    END IF;
    SELECT array_agg(DISTINCT a.id) INTO v_ids
      FROM unnest(p_owners, p_assets) AS u (owner, asset)
     CROSS JOIN LATERAL (SELECT k.id FROM wallets.accounts k
                          WHERE k.owner = u.owner AND k.asset = u.asset AND k.kind = 'user'
                          LIMIT 1) a;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    PERFORM 1 FROM wallets.accounts a
     WHERE a.id = ANY (v_ids)
     ORDER BY a.id
       FOR UPDATE;
END;
$$;
REVOKE ALL ON FUNCTION wallets.lock_user_accounts(text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wallets.lock_user_accounts(text[], text[]) TO orders, wallets;
