-- requires: wallets/format_minor
-- requires: registry/asset_scales
-- wallets.move_funds: a hold or release taken inside the caller's own
-- transaction (wallets.hold_funds / release_funds).
--
-- The orders service accepts an order and holds its funds in ONE database
-- transaction (the order row, this hold and the engine command in the outbox
-- commit together or not at all), instead of a nested RPC to wallets between
-- two transactions of its own. That is why orders and wallets share one
-- PostgreSQL database. This function is wallets' contract for it: the same
-- journal entry as the `hold` RPC (key `hold:<ref>`, same details), so the
-- two are interchangeable and a replay through either is recognised.
--
-- Errors are raised with SQLSTATE P0001 and a message that starts with the
-- wallets error code (INSUFFICIENT_FUNDS, INSUFFICIENT_LOCKED, UNKNOWN_USER, UNKNOWN_ASSET,
-- INVALID_AMOUNT, AMOUNT_TOO_PRECISE, INVALID_ID, IDEMPOTENCY_CONFLICT) and a colon.

-- A hold (available -> locked) or a release (locked -> available) of one
-- user account; returns the journal transaction id (the original one on a
-- replay with the same ref and amount).
CREATE OR REPLACE FUNCTION wallets.move_funds(p_kind text, p_owner text, p_asset text, p_amount numeric,
                                   p_ref text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_scale int;
    v_minor numeric;
    v_account bigint;
    v_source_balance numeric;
    v_from text := CASE p_kind WHEN 'hold' THEN 'available' ELSE 'locked' END;
    v_to text := CASE p_kind WHEN 'hold' THEN 'locked' ELSE 'available' END;
    v_key text := p_kind || ':' || p_ref;
    v_details jsonb;
    v_stored_id bigint;
    v_stored jsonb;
BEGIN
    IF p_kind NOT IN ('hold', 'release') THEN
        RAISE EXCEPTION 'INVALID_REQUEST: % is neither hold nor release', p_kind;
    END IF;
    -- The registry owns each asset's scale (its declared function).
    SELECT scale INTO v_scale FROM registry.asset_scales() WHERE asset = p_asset;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'UNKNOWN_ASSET: %', p_asset;
    END IF;
    IF p_amount IS NULL OR p_amount = 'NaN' OR p_amount <= 0 THEN
        RAISE EXCEPTION 'INVALID_AMOUNT: a % must be positive, not %', p_kind, p_amount;
    END IF;
    v_minor := p_amount * power(10::numeric, v_scale);
    IF v_minor <> trunc(v_minor) THEN
        RAISE EXCEPTION 'AMOUNT_TOO_PRECISE: % has more than % decimals for %', p_amount, v_scale, p_asset;
    END IF;
    v_minor := trunc(v_minor);
    IF p_ref IS NULL OR length(p_ref) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'INVALID_ID: a % ref is 1 to 200 characters', p_kind;
    END IF;

    -- The account row lock comes first: it serialises movements of the same
    -- account, so the key check below sees any concurrent one's commit.
    SELECT id, CASE v_from WHEN 'available' THEN available ELSE locked END
      INTO v_account, v_source_balance
      FROM wallets.accounts
     WHERE owner = p_owner AND asset = p_asset AND kind = 'user'
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'UNKNOWN_USER: % has no % account', p_owner, p_asset;
    END IF;

    v_details := jsonb_build_object('user', p_owner, 'asset', p_asset,
                                    'amount', wallets.format_minor(v_minor, v_scale), 'ref', p_ref);
    SELECT id, details INTO v_stored_id, v_stored
      FROM wallets.transactions WHERE idempotency_key = v_key;
    IF FOUND THEN
        IF v_stored->>'user' IS DISTINCT FROM p_owner OR v_stored->>'asset' IS DISTINCT FROM p_asset
           OR v_stored->>'amount' IS DISTINCT FROM v_details->>'amount' THEN
            RAISE EXCEPTION 'IDEMPOTENCY_CONFLICT: % was already used for another %', v_key, p_kind;
        END IF;
        RETURN v_stored_id;
    END IF;

    IF v_source_balance < v_minor THEN
        RAISE EXCEPTION '%: % %: % has % % %, needs %',
              CASE p_kind WHEN 'hold' THEN 'INSUFFICIENT_FUNDS' ELSE 'INSUFFICIENT_LOCKED' END,
              p_kind, p_ref, p_owner, wallets.format_minor(v_source_balance, v_scale), p_asset,
              v_from, wallets.format_minor(v_minor, v_scale);
    END IF;

    INSERT INTO wallets.transactions (idempotency_key, type, details)
    VALUES (v_key, p_kind, v_details)
    RETURNING id INTO v_stored_id;
    INSERT INTO wallets.postings (account_id, transaction_id, bucket, asset, amount)
    VALUES (v_account, v_stored_id, v_from, p_asset, -v_minor),
           (v_account, v_stored_id, v_to, p_asset, v_minor);
    RETURN v_stored_id;
END;
$$;
-- Others call it through hold_funds / release_funds only.
REVOKE ALL ON FUNCTION wallets.move_funds(text, text, text, numeric, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wallets.move_funds(text, text, text, numeric, text) TO wallets;
