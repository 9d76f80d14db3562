-- wallets.lock_user_accounts: row locks on the user accounts of the given
-- (owner, asset) pairs, taken in account id order, for the caller's
-- transaction. Settlement locks accounts in id order; another service that
-- will release or hold on several accounts in one transaction (orders, at the
-- end of its orders) takes its locks through this function first, in the
-- same order, so the two never deadlock, without reading wallets' tables.
-- SECURITY DEFINER: the caller needs EXECUTE on it, no right on the tables.
CREATE OR REPLACE FUNCTION wallets.lock_user_accounts(p_owners text[], p_assets text[])
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM wallets.accounts a
     WHERE a.kind = 'user'
       AND (a.owner, a.asset) IN (SELECT * FROM unnest(p_owners, p_assets))
     ORDER BY a.id
       FOR UPDATE;
END;
$$;
REVOKE ALL ON FUNCTION wallets.lock_user_accounts(text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wallets.lock_user_accounts(text[], text[]) TO orders, wallets;
