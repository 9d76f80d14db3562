-- requires: wallets/move_funds_batch
-- wallets.move_funds: one hold or release (wallets.move_funds_batch, the one
-- implementation, with one element), its refusal raised: SQLSTATE EX001, the
-- code in the HINT, the text in the message (docs/errors.md); nothing is
-- written. Returns the journal transaction id (the original one on a replay
-- with the same ref, user, asset and amount). For callers that take one
-- movement and let a refusal fail their statement (wallets.hold_funds /
-- release_funds).
CREATE OR REPLACE FUNCTION wallets.move_funds(p_kind text, p_owner text, p_asset text, p_amount numeric,
                                   p_ref text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_moved record;
BEGIN
    SELECT m.transaction_id, m.refusal_code, m.refusal INTO v_moved
      FROM wallets.move_funds_batch(ARRAY[p_kind], ARRAY[p_owner], ARRAY[p_asset], ARRAY[p_amount],
                                    ARRAY[p_ref]) m;
    IF v_moved.refusal_code IS NOT NULL THEN
        RAISE EXCEPTION '%', v_moved.refusal USING ERRCODE = 'EX001', HINT = v_moved.refusal_code;
    END IF;
    RETURN v_moved.transaction_id;
END;
$$;
-- Others call it through hold_funds / release_funds only.
REVOKE ALL ON FUNCTION wallets.move_funds(text, text, text, numeric, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wallets.move_funds(text, text, text, numeric, text) TO wallets;
