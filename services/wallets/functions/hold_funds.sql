-- requires: wallets/move_funds
-- available -> locked of one user account, inside the caller's transaction.
CREATE OR REPLACE FUNCTION wallets.hold_funds(p_owner text, p_asset text, p_amount numeric, p_ref text)
RETURNS bigint LANGUAGE sql AS $$ SELECT wallets.move_funds('hold', p_owner, p_asset, p_amount, p_ref) $$;
