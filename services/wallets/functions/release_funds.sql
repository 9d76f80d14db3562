-- requires: wallets/move_funds
-- locked -> available of one user account, inside the caller's transaction
-- (wallets.move_funds: the batch of one, its refusal raised). Batches go
-- through wallets.move_funds_batch.
CREATE OR REPLACE FUNCTION wallets.release_funds(p_owner text, p_asset text, p_amount numeric, p_ref text)
RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT wallets.move_funds('release', p_owner, p_asset, p_amount, p_ref) $$;
-- SECURITY DEFINER: orders may call it inside its own transaction with no
-- right on wallets' tables.
REVOKE ALL ON FUNCTION wallets.release_funds(text, text, numeric, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wallets.release_funds(text, text, numeric, text) TO orders, wallets;
