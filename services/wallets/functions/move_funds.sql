-- requires: registry/asset_scales
-- wallets.move_funds: the one implementation of a hold (available -> locked)
-- and a release (locked -> available) of one user account, inside the
-- caller's transaction. Every hold and release goes through it: orders'
-- place_order(s)_tx through wallets.hold_funds / release_funds, wallets' own
-- hold / release RPCs through wallets.move_funds_each (movements.py).
--
-- The orders service accepts an order and holds its funds in ONE database
-- transaction (the order row, this hold and the engine command in the outbox
-- commit together or not at all), instead of a nested RPC to wallets between
-- two transactions of its own. That is why orders and wallets share one
-- PostgreSQL database.
--
-- The journal entry: key `<kind>:<ref>`, details {user, asset, amount, ref},
-- the amount written with the asset's full scale (round(amount, scale) is
-- exact here: the amount has at most that many decimals).
--
-- Refusals are coded (docs/errors.md): SQLSTATE EX001, the error code in the
-- HINT (INSUFFICIENT_FUNDS, INSUFFICIENT_LOCKED, UNKNOWN_USER, UNKNOWN_ASSET,
-- INVALID_AMOUNT, AMOUNT_TOO_PRECISE, INVALID_ID, IDEMPOTENCY_CONFLICT,
-- INVALID_REQUEST), the human text in the message; nothing is written.

-- Returns the journal transaction id (the original one on a replay with the
-- same ref, user, asset and amount).
CREATE OR REPLACE FUNCTION wallets.move_funds(p_kind text, p_owner text, p_asset text, p_amount numeric,
                                   p_ref text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_scale int;
    v_minor numeric;
    v_amount text;
    v_account bigint;
    v_source_balance numeric;
    v_from text := CASE p_kind WHEN 'hold' THEN 'available' ELSE 'locked' END;
    v_to text := CASE p_kind WHEN 'hold' THEN 'locked' ELSE 'available' END;
    v_short text := CASE p_kind WHEN 'hold' THEN 'INSUFFICIENT_FUNDS' ELSE 'INSUFFICIENT_LOCKED' END;
    v_key text := p_kind || ':' || p_ref;
    v_stored_id bigint;
    v_stored jsonb;
BEGIN
    IF p_kind IS NULL OR p_kind NOT IN ('hold', 'release') THEN
        RAISE EXCEPTION '% is neither hold nor release', p_kind
              USING ERRCODE = 'EX001', HINT = 'INVALID_REQUEST';
    END IF;
    -- The registry owns each asset's scale (its declared function).
    SELECT scale INTO v_scale FROM registry.asset_scales() WHERE asset = p_asset;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a listed asset', p_asset
              USING ERRCODE = 'EX001', HINT = 'UNKNOWN_ASSET';
    END IF;
    IF p_amount IS NULL OR p_amount = 'NaN' OR p_amount <= 0 THEN
        RAISE EXCEPTION 'a % must be positive, not %', p_kind, p_amount
              USING ERRCODE = 'EX001', HINT = 'INVALID_AMOUNT';
    END IF;
    IF p_amount <> round(p_amount, v_scale) THEN
        RAISE EXCEPTION '% has more than % decimals for %', p_amount, v_scale, p_asset
              USING ERRCODE = 'EX001', HINT = 'AMOUNT_TOO_PRECISE';
    END IF;
    v_minor := p_amount * power(10::numeric, v_scale);
    v_amount := round(p_amount, v_scale)::text;
    IF p_ref IS NULL OR length(p_ref) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'a % ref is 1 to 200 characters', p_kind
              USING ERRCODE = 'EX001', HINT = 'INVALID_ID';
    END IF;

    -- The account row lock comes first: it serialises movements of the same
    -- account, so the key check below sees any concurrent one's commit.
    SELECT id, CASE v_from WHEN 'available' THEN available ELSE locked END
      INTO v_account, v_source_balance
      FROM wallets.accounts
     WHERE owner = p_owner AND asset = p_asset AND kind = 'user'
       FOR UPDATE;
    IF NOT FOUND THEN
        -- A known user (one with accounts) has nothing yet of an asset listed
        -- after its accounts were opened: not unknown, short of funds.
        IF EXISTS (SELECT 1 FROM wallets.accounts WHERE owner = p_owner AND kind = 'user') THEN
            RAISE EXCEPTION '% %: % has no % %', p_kind, p_ref, p_owner, p_asset, v_from
                  USING ERRCODE = 'EX001', HINT = v_short;
        END IF;
        RAISE EXCEPTION '% has no % account', p_owner, p_asset
              USING ERRCODE = 'EX001', HINT = 'UNKNOWN_USER';
    END IF;

    SELECT id, details INTO v_stored_id, v_stored
      FROM wallets.transactions WHERE idempotency_key = v_key;
    IF FOUND THEN
        IF v_stored->>'user' IS DISTINCT FROM p_owner OR v_stored->>'asset' IS DISTINCT FROM p_asset
           OR v_stored->>'amount' IS DISTINCT FROM v_amount THEN
            RAISE EXCEPTION '% was already used for another %', v_key, p_kind
                  USING ERRCODE = 'EX001', HINT = 'IDEMPOTENCY_CONFLICT';
        END IF;
        RETURN v_stored_id;
    END IF;

    IF v_source_balance < v_minor THEN
        RAISE EXCEPTION '% %: % has less than % % %', p_kind, p_ref, p_owner, v_amount, p_asset, v_from
              USING ERRCODE = 'EX001', HINT = v_short;
    END IF;

    INSERT INTO wallets.transactions (idempotency_key, type, details)
    VALUES (v_key, p_kind, jsonb_build_object('user', p_owner, 'asset', p_asset,
                                              'amount', v_amount, 'ref', p_ref))
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
