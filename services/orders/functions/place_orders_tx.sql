-- requires: wallets/move_funds_batch
-- requires: wallets/lock_user_accounts
-- requires: orders/place_orders_client_order_id
-- place_orders_tx: a batch of orders accepted in the caller's transaction
-- (group commit, docs/order-flow.md): each order is placed or refused on its
-- own, with the same refusals as one order alone.
--
-- p_orders: a JSON array of objects named like the columns of `orders`
-- (user_id, market, client_order_id, side, order_type, price, quantity,
-- quote_amount, time_in_force, post_only, stp_mode, hold_asset, hold_amount,
-- cap_price, cap_quantity, request_id); amounts as decimal strings.
--
-- One row per element: `item` its 1-based position, `outcome`
--   placed   -- written and held now: the caller enqueues its engine command
--               in the same transaction;
--   replayed -- the same request ran before (redelivered after a process died
--               between commit and reply): its order, nothing new;
--   refused  -- `refusal_code` is the refusal's error code (USER_FROZEN,
--               USER_CLOSED, DUPLICATE_CLIENT_ORDER_ID, or wallets' refusal
--               of the hold: INSUFFICIENT_FUNDS ...), `refusal` its text;
--               nothing of it is written or held. Orders of one user in one
--               batch are held in batch order, each as if alone after the
--               ones before it: a later one that does not fit is refused.
--
-- Locks, in the order every writer of these rows takes them: the users'
-- shared locks (against a freeze, providers.user_lock) in user order, then
-- the accounts to hold from in id order (wallets.lock_user_accounts, as
-- settlement and the events consumer), then the order rows. The orders are
-- inserted by one statement before the holds (a concurrent duplicate holds
-- nothing); the holds of every inserted order are ONE call of wallets'
-- set-based movement (wallets.move_funds_batch: one journal statement, one
-- balances_changed row, no subtransaction), which refuses each order on its
-- own with wallets' code and message; a refused order is deleted.
CREATE OR REPLACE FUNCTION place_orders_tx(p_orders jsonb)
RETURNS TABLE (item bigint, outcome text, refusal_code text, refusal text, placed orders)
LANGUAGE plpgsql AS $$
DECLARE
    v_entry record;
    v_order orders;
    v_block text;
    v_keys text[] := '{}';
    v_candidates jsonb := '[]';
    v_items bigint[] := '{}';
    v_ids bigint[] := '{}';
    v_inserted orders[];
    v_held orders[];
    v_held_at int[];
    v_owners text[];
    v_assets text[];
    v_amounts numeric[];
    v_refs text[];
    v_codes text[];
    v_texts text[];
    v_next int := 1;
    v_refused bigint[] := '{}';
    v_position int;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('user:' || u.user_id, 7))
       FROM (SELECT DISTINCT e->>'user_id' AS user_id FROM jsonb_array_elements(p_orders) e
              ORDER BY 1) u;
    PERFORM wallets.lock_user_accounts(array_agg(e->>'user_id'), array_agg(e->>'hold_asset'))
       FROM jsonb_array_elements(p_orders) e;

    -- Refusals that need no write: a blocked user, a client order id taken
    -- (or used twice in this batch); a redelivered request's orders.
    FOR v_entry IN SELECT e.value AS body, e.n FROM jsonb_array_elements(p_orders)
                   WITH ORDINALITY AS e(value, n) ORDER BY e.n LOOP
        v_order := jsonb_populate_record(NULL::orders, v_entry.body);
        item := v_entry.n;
        SELECT state INTO v_block FROM user_trading_blocks WHERE user_id = v_order.user_id;
        IF FOUND THEN
            outcome := 'refused';
            refusal_code := 'USER_' || upper(v_block);
            refusal := format('this user is %s', v_block);
            placed := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF v_order.client_order_id IS NOT NULL THEN
            IF (v_order.user_id || ' ' || v_order.client_order_id) = ANY (v_keys) THEN
                outcome := 'refused';
                refusal_code := 'DUPLICATE_CLIENT_ORDER_ID';
                refusal := format('%s is already used by this user', v_order.client_order_id);
                placed := NULL;
                RETURN NEXT;
                CONTINUE;
            END IF;
            v_keys := v_keys || (v_order.user_id || ' ' || v_order.client_order_id);
            RETURN QUERY SELECT item, t.outcome, t.refusal_code, t.refusal, t.placed
                           FROM place_orders_client_order_id(v_order) t;
            IF FOUND THEN
                CONTINUE;
            END IF;
        END IF;
        v_ids := v_ids || nextval('order_ids');
        v_candidates := v_candidates || jsonb_build_array(
            v_entry.body || jsonb_build_object('order_id', v_ids[cardinality(v_ids)]));
        v_items := v_items || v_entry.n;
    END LOOP;

    -- The orders in one statement. One another transaction placed meanwhile
    -- (same client order id) is left out here and refused below.
    WITH inserted AS (
        INSERT INTO orders (order_id, user_id, market, client_order_id, side, order_type, price,
                            quantity, quote_amount, time_in_force, post_only, stp_mode, status,
                            hold_asset, hold_amount, cap_price, cap_quantity, request_id)
        SELECT c.order_id, c.user_id, c.market, c.client_order_id, c.side, c.order_type, c.price,
               c.quantity, c.quote_amount, c.time_in_force, coalesce(c.post_only, false),
               c.stp_mode, 'new', c.hold_asset, c.hold_amount, c.cap_price, c.cap_quantity,
               c.request_id
          FROM jsonb_populate_recordset(NULL::orders, v_candidates) c
        ON CONFLICT (user_id, client_order_id) WHERE client_order_id IS NOT NULL DO NOTHING
        RETURNING *
    )
    SELECT coalesce(array_agg(inserted), '{}') INTO v_inserted FROM inserted;

    -- The inserted orders in batch order, and their holds in one call.
    SELECT array_agg(o ORDER BY c.position), array_agg(c.position ORDER BY c.position),
           array_agg(o.user_id ORDER BY c.position), array_agg(o.hold_asset ORDER BY c.position),
           array_agg(o.hold_amount ORDER BY c.position),
           array_agg('order:' || o.order_id ORDER BY c.position)
      INTO v_held, v_held_at, v_owners, v_assets, v_amounts, v_refs
      FROM unnest(v_ids) WITH ORDINALITY AS c (order_id, position)
      JOIN unnest(v_inserted) AS o ON o.order_id = c.order_id;
    SELECT array_agg(h.refusal_code ORDER BY h.item), array_agg(h.refusal ORDER BY h.item)
      INTO v_codes, v_texts
      FROM wallets.move_funds_batch(array_fill('hold'::text, ARRAY[coalesce(cardinality(v_refs), 0)]),
                                    v_owners, v_assets, v_amounts, v_refs) h;

    FOR v_position IN 1 .. coalesce(array_length(v_items, 1), 0) LOOP
        item := v_items[v_position];
        IF v_held_at[v_next] IS DISTINCT FROM v_position THEN
            -- Another transaction took the client order id meanwhile.
            v_order := jsonb_populate_record(NULL::orders, v_candidates -> (v_position - 1));
            RETURN QUERY SELECT item, t.outcome, t.refusal_code, t.refusal, t.placed
                           FROM place_orders_client_order_id(v_order) t;
            CONTINUE;
        END IF;
        IF v_codes[v_next] IS NULL THEN
            outcome := 'placed';
            refusal_code := NULL;
            refusal := NULL;
            placed := v_held[v_next];
        ELSE
            -- Wallets' coded refusal (docs/errors.md): this order alone.
            outcome := 'refused';
            refusal_code := v_codes[v_next];
            refusal := v_texts[v_next];
            placed := NULL;
            v_refused := v_refused || (v_held[v_next]).order_id;
        END IF;
        v_next := v_next + 1;
        RETURN NEXT;
    END LOOP;

    IF cardinality(v_refused) > 0 THEN
        DELETE FROM orders WHERE order_id = ANY (v_refused);
    END IF;
END;
$$;
