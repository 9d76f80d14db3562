-- requires: registry/asset_scales
-- requires: wallets/lock_user_accounts
-- wallets.move_funds_batch: the one implementation of a hold (available ->
-- locked) and a release (locked -> available) of a user account, for a batch
-- of them inside the caller's transaction. Every hold and release goes
-- through it: orders' place_orders_tx (the holds of an accepted batch), its
-- events consumer (the releases of the orders that ended), its amends, and
-- wallets' own hold / release RPCs under group commit (movements.py);
-- wallets.move_funds is the one-element form that raises its refusal.
--
-- The orders service accepts orders and holds their funds in ONE database
-- transaction (the order rows, these holds and the engine commands in the
-- outbox commit together or not at all), instead of a nested RPC to wallets
-- between two transactions of its own. That is why orders and wallets share
-- one PostgreSQL database.
--
-- Element i is (p_kinds[i], p_owners[i], p_assets[i], p_amounts[i],
-- p_refs[i]), amounts in whole units (decimal). Each element is answered or
-- refused on its own, exactly as if the elements ran one at a time in
-- element order: several elements on one account see each other's effect (a
-- hold that does not fit is refused and the next smaller one may fit), and
-- an element whose key (`<kind>:<ref>`) an earlier element of the batch took
-- is that element's replay (same user, asset and amount) or a conflict.
--
-- The journal entry: key `<kind>:<ref>`, details {user, asset, amount, ref},
-- the amount written with the asset's full scale (round(amount, scale) is
-- exact here: the amount has at most that many decimals).
--
-- How: the accounts are locked first, in id order (as settlement and orders
-- lock them, so concurrent batches cannot deadlock); one statement then
-- checks every element (scale from the registry, positive, on the grid, ref
-- length, account, stored keys: each refusal in the order one element alone
-- would meet them); the balances are decided in element order on the locked
-- balances in memory (no statement per element, no subtransaction); one
-- statement writes every journal transaction and one every posting, so the
-- postings' statement triggers (apply_postings, announce_balances_changed:
-- ONE balances_changed row naming every account touched) run once.
--
-- One row per element, `item` its 1-based position: `transaction_id`,
-- `created_at` and `details` of its journal entry (the original one on a
-- replay), or `refusal_code` and `refusal` (docs/errors.md:
-- INSUFFICIENT_FUNDS, INSUFFICIENT_LOCKED, UNKNOWN_USER, UNKNOWN_ASSET,
-- INVALID_AMOUNT, AMOUNT_TOO_PRECISE, INVALID_ID, IDEMPOTENCY_CONFLICT,
-- INVALID_REQUEST); a refused element writes nothing.
CREATE OR REPLACE FUNCTION wallets.move_funds_batch(p_kinds text[], p_owners text[], p_assets text[],
                                                    p_amounts numeric[], p_refs text[])
RETURNS TABLE (item int, transaction_id bigint, created_at timestamptz, details jsonb,
               refusal_code text, refusal text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- Its statements take arrays whose length a custom plan would re-plan for on
-- every call (milliseconds each); the generic plans are the same lookups by
-- unique index whatever the batch.
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_count int := coalesce(cardinality(p_kinds), 0);
    -- Per element: its refusal (code, text), the stored transaction it
    -- replays, its account (id, and the first element of the batch on it),
    -- its amount in minor units and as written, the first element of the
    -- batch with its key, whether it is written by this call.
    v_code text[];
    v_text text[];
    v_stored bigint[];
    v_account bigint[];
    v_slot int[];
    v_minor numeric[];
    v_amount text[];
    v_key int[];
    v_taken boolean[];
    -- At the first element of each account: the account's balances as the
    -- elements decided so far leave them.
    v_available numeric[];
    v_locked numeric[];
    -- At the first element of each key: the element of this batch that wrote it.
    v_taker int[];
    v_taking int;
    v_hold boolean;
    v_short text;
BEGIN
    IF coalesce(cardinality(p_owners), 0) <> v_count OR coalesce(cardinality(p_assets), 0) <> v_count
       OR coalesce(cardinality(p_amounts), 0) <> v_count
       OR coalesce(cardinality(p_refs), 0) <> v_count THEN
        RAISE EXCEPTION 'move_funds_batch takes arrays of one length'
              USING ERRCODE = 'EX001', HINT = 'INVALID_REQUEST';
    END IF;
    IF v_count = 0 THEN
        RETURN;
    END IF;

    -- The account row locks come first: they serialise movements of the
    -- same accounts, so the statement below reads the balances and keys as
    -- the last committed movement of each account left them. An account
    -- opened since is locked by that statement's read, after the others and
    -- so out of id order: ONE such account and one concurrent settlement are
    -- enough for a deadlock (this batch holds accounts 1 and 12, account 9 is
    -- opened, a settlement locks 9 and waits for 12, this read waits for 9).
    -- PostgreSQL aborts one side; every caller runs the transaction again
    -- (services.common.postgres.retry_transient: wallets' hold/release RPCs
    -- in movements.py, orders' place_orders_tx and events consumer).
    PERFORM wallets.lock_user_accounts(p_owners, p_assets);

    WITH scale AS MATERIALIZED (
        SELECT s.asset, s.scale FROM registry.asset_scales() s   -- the registry owns scales
    ), element AS (
        SELECT e.n::int AS n, e.kind, e.owner, e.asset, e.amount, e.ref, s.scale,
               e.kind || ':' || e.ref AS key
          FROM unnest(p_kinds, p_owners, p_assets, p_amounts, p_refs)
               WITH ORDINALITY AS e (kind, owner, asset, amount, ref, n)
          LEFT JOIN scale s ON s.asset = e.asset
    ), checked AS (
        SELECT e.*, CASE
                   WHEN e.kind IS NULL OR e.kind NOT IN ('hold', 'release') THEN 'INVALID_REQUEST'
                   WHEN e.scale IS NULL THEN 'UNKNOWN_ASSET'
                   WHEN e.amount IS NULL OR e.amount = 'NaN' OR e.amount <= 0 THEN 'INVALID_AMOUNT'
                   WHEN e.amount <> round(e.amount, e.scale) THEN 'AMOUNT_TOO_PRECISE'
                   WHEN e.ref IS NULL OR length(e.ref) NOT BETWEEN 1 AND 200 THEN 'INVALID_ID'
               END AS invalid
          FROM element e
    ), located AS (
        SELECT c.*, a.id AS account_id, a.available, a.locked,
               CASE WHEN c.invalid IS NULL THEN round(c.amount, c.scale)::text END AS amount_text,
               CASE WHEN c.invalid IS NULL THEN c.amount * power(10::numeric, c.scale) END AS minor,
               t.id AS stored_id, t.details AS stored,
               CASE c.kind WHEN 'hold' THEN 'INSUFFICIENT_FUNDS' ELSE 'INSUFFICIENT_LOCKED' END
                   AS short,
               CASE c.kind WHEN 'hold' THEN 'available' ELSE 'locked' END AS source
          FROM checked c
          -- One unique-index lookup per element (LIMIT 1 keeps each a
          -- parameterised lookup whatever the planner guesses of the batch),
          -- locking the row it reads: an account opened after the locks above
          -- (they lock the accounts that existed then) is locked here, so no
          -- balance that decides an element is read unlocked (out of id
          -- order: a deadlock is possible, see above, and retried). For the
          -- others it is the lock this transaction holds already: no wait.
          LEFT JOIN LATERAL (SELECT a.id, a.available, a.locked FROM wallets.accounts a
                              WHERE c.invalid IS NULL AND a.owner = c.owner AND a.asset = c.asset
                                AND a.kind = 'user' LIMIT 1 FOR UPDATE) a ON true
          LEFT JOIN LATERAL (SELECT t.id, t.details FROM wallets.transactions t
                              WHERE c.invalid IS NULL AND t.idempotency_key = c.key LIMIT 1) t ON true
    ), decided AS (
        SELECT l.*,
               CASE WHEN l.invalid IS NOT NULL THEN l.invalid
                    WHEN l.account_id IS NULL THEN
                        -- A known user (one with accounts) has nothing yet of an
                        -- asset listed after its accounts were opened: not
                        -- unknown, short of funds.
                        CASE WHEN EXISTS (SELECT 1 FROM wallets.accounts k
                                           WHERE k.owner = l.owner AND k.kind = 'user')
                             THEN l.short ELSE 'UNKNOWN_USER' END
                    WHEN l.stored_id IS NOT NULL
                         AND (l.stored->>'user' IS DISTINCT FROM l.owner
                              OR l.stored->>'asset' IS DISTINCT FROM l.asset
                              OR l.stored->>'amount' IS DISTINCT FROM l.amount_text)
                        THEN 'IDEMPOTENCY_CONFLICT'
               END AS code,
               -- the first element of its account, of its key: where the loop
               -- keeps the account's balances, the key's taker
               min(l.n) OVER (PARTITION BY l.account_id) AS slot,
               min(l.n) OVER (PARTITION BY l.key) AS key_slot
          FROM located l
    )
    SELECT array_agg(d.code ORDER BY d.n),
           array_agg(CASE d.code
                WHEN 'INVALID_REQUEST' THEN
                    format('%s is neither hold nor release', coalesce(d.kind, '<NULL>'))
                WHEN 'UNKNOWN_ASSET' THEN format('%s is not a listed asset', coalesce(d.asset, '<NULL>'))
                WHEN 'INVALID_AMOUNT' THEN
                    format('a %s must be positive, not %s', d.kind, coalesce(d.amount::text, '<NULL>'))
                WHEN 'AMOUNT_TOO_PRECISE' THEN
                    format('%s has more than %s decimals for %s', d.amount, d.scale, d.asset)
                WHEN 'INVALID_ID' THEN format('a %s ref is 1 to 200 characters', d.kind)
                WHEN 'UNKNOWN_USER' THEN
                    format('%s has no %s account', coalesce(d.owner, '<NULL>'), d.asset)
                WHEN 'IDEMPOTENCY_CONFLICT' THEN
                    format('%s was already used for another %s', d.key, d.kind)
                WHEN d.short THEN
                    format('%s %s: %s has no %s %s', d.kind, d.ref, d.owner, d.asset, d.source)
                END ORDER BY d.n),
           array_agg(CASE WHEN d.code IS NULL THEN d.stored_id END ORDER BY d.n),
           array_agg(d.account_id ORDER BY d.n),
           array_agg(d.slot ORDER BY d.n),
           array_agg(d.minor ORDER BY d.n),
           array_agg(d.amount_text ORDER BY d.n),
           array_agg(d.key_slot ORDER BY d.n),
           array_agg(d.available ORDER BY d.n),
           array_agg(d.locked ORDER BY d.n)
      INTO v_code, v_text, v_stored, v_account, v_slot, v_minor, v_amount, v_key,
           v_available, v_locked
      FROM decided d;

    -- The balances, in element order, on the locked balances: what one
    -- element at a time would decide, without a statement per element.
    v_taken := array_fill(false, ARRAY[v_count]);
    v_taker := array_fill(NULL::int, ARRAY[v_count]);
    FOR i IN 1 .. v_count LOOP
        CONTINUE WHEN v_code[i] IS NOT NULL OR v_stored[i] IS NOT NULL;
        v_taking := v_taker[v_key[i]];
        IF v_taking IS NOT NULL THEN
            -- An earlier element of this batch wrote this key.
            IF p_owners[i] <> p_owners[v_taking] OR p_assets[i] <> p_assets[v_taking]
               OR v_amount[i] <> v_amount[v_taking] THEN
                v_code[i] := 'IDEMPOTENCY_CONFLICT';
                v_text[i] := format('%s:%s was already used for another %s', p_kinds[i], p_refs[i],
                                    p_kinds[i]);
            END IF;
            CONTINUE;   -- else its replay: the taker's transaction
        END IF;
        v_hold := p_kinds[i] = 'hold';
        IF (CASE WHEN v_hold THEN v_available[v_slot[i]] ELSE v_locked[v_slot[i]] END) < v_minor[i] THEN
            v_short := CASE WHEN v_hold THEN 'available' ELSE 'locked' END;
            v_code[i] := CASE WHEN v_hold THEN 'INSUFFICIENT_FUNDS' ELSE 'INSUFFICIENT_LOCKED' END;
            v_text[i] := format('%s %s: %s has less than %s %s %s', p_kinds[i], p_refs[i],
                                p_owners[i], v_amount[i], p_assets[i], v_short);
            CONTINUE;
        END IF;
        IF v_hold THEN
            v_available[v_slot[i]] := v_available[v_slot[i]] - v_minor[i];
            v_locked[v_slot[i]] := v_locked[v_slot[i]] + v_minor[i];
        ELSE
            v_locked[v_slot[i]] := v_locked[v_slot[i]] - v_minor[i];
            v_available[v_slot[i]] := v_available[v_slot[i]] + v_minor[i];
        END IF;
        v_taken[i] := true;
        v_taker[v_key[i]] := i;
    END LOOP;

    -- Every journal transaction in one statement, every posting in one
    -- (their statement triggers run once); each element's answer. A replay
    -- within the batch shares its taker's key, so it finds its transaction.
    RETURN QUERY
    WITH element AS (
        SELECT e.n::int AS n, e.kind, e.owner, e.asset, e.ref, e.kind || ':' || e.ref AS key,
               e.code, e.message, e.stored, e.account, e.minor, e.amount, e.taken
          FROM unnest(p_kinds, p_owners, p_assets, p_refs, v_code, v_text, v_stored, v_account,
                      v_minor, v_amount, v_taken)
               WITH ORDINALITY AS e (kind, owner, asset, ref, code, message, stored, account, minor,
                                     amount, taken, n)
    ), moved AS (
        INSERT INTO wallets.transactions AS t (idempotency_key, type, details)
        SELECT e.key, e.kind,
               jsonb_build_object('user', e.owner, 'asset', e.asset, 'amount', e.amount, 'ref', e.ref)
          FROM element e
         WHERE e.taken
         ORDER BY e.n
        RETURNING t.id, t.idempotency_key, t.created_at, t.details
    ), posted AS (
        INSERT INTO wallets.postings (account_id, transaction_id, bucket, asset, amount)
        SELECT e.account, m.id, p.bucket, e.asset, p.amount
          FROM element e
          JOIN moved m ON m.idempotency_key = e.key
          CROSS JOIN LATERAL (VALUES
              (CASE e.kind WHEN 'hold' THEN 'available' ELSE 'locked' END, -e.minor),
              (CASE e.kind WHEN 'hold' THEN 'locked' ELSE 'available' END, e.minor)
          ) AS p (bucket, amount)
         WHERE e.taken
    )
    SELECT e.n, coalesce(m.id, s.id), coalesce(m.created_at, s.created_at),
           coalesce(m.details, s.details)::jsonb, e.code, e.message
      FROM element e
      LEFT JOIN moved m ON e.code IS NULL AND e.stored IS NULL AND m.idempotency_key = e.key
      LEFT JOIN wallets.transactions s ON s.id = e.stored
     ORDER BY e.n;
END;
$$;
-- SECURITY DEFINER: orders calls it inside its own transaction with no right
-- on wallets' tables.
REVOKE ALL ON FUNCTION wallets.move_funds_batch(text[], text[], text[], numeric[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wallets.move_funds_batch(text[], text[], text[], numeric[], text[])
    TO orders, wallets;
