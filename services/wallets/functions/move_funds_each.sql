-- requires: wallets/move_funds
-- requires: wallets/lock_user_accounts
-- wallets.move_funds_each: many holds / releases (wallets' own hold and
-- release RPCs under group commit, movements.py) in the caller's statement,
-- each through wallets.move_funds and each refused on its own: a refusal
-- (SQLSTATE EX001) undoes only its own movement and comes back as a row with
-- its code and message. The accounts are locked first, in id order, as
-- settlement and orders lock them, so concurrent batches cannot deadlock.
--
-- One row per element, `item` its 1-based position: `transaction_id`,
-- `created_at` and `details` of its journal entry (the original one on a
-- replay), or `refusal_code` and `refusal`.
CREATE OR REPLACE FUNCTION wallets.move_funds_each(p_kinds text[], p_owners text[], p_assets text[],
                                                   p_amounts numeric[], p_refs text[])
RETURNS TABLE (item int, transaction_id bigint, created_at timestamptz, details jsonb,
               refusal_code text, refusal text)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM wallets.lock_user_accounts(p_owners, p_assets);
    FOR i IN 1 .. coalesce(cardinality(p_kinds), 0) LOOP
        item := i;
        refusal_code := NULL;
        refusal := NULL;
        BEGIN
            transaction_id := wallets.move_funds(p_kinds[i], p_owners[i], p_assets[i],
                                                 p_amounts[i], p_refs[i]);
            SELECT t.created_at, t.details INTO created_at, details
              FROM wallets.transactions t WHERE t.id = transaction_id;
        EXCEPTION WHEN SQLSTATE 'EX001' THEN
            GET STACKED DIAGNOSTICS refusal_code = PG_EXCEPTION_HINT, refusal = MESSAGE_TEXT;
            transaction_id := NULL;
            created_at := NULL;
            details := NULL;
        END;
        RETURN NEXT;
    END LOOP;
END;
$$;
REVOKE ALL ON FUNCTION wallets.move_funds_each(text[], text[], text[], numeric[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wallets.move_funds_each(text[], text[], text[], numeric[], text[]) TO wallets;
