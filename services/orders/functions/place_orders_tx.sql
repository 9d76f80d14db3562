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
-- cap_price, cap_quantity, request_id); amounts as decimal strings; and
-- reuse_client_order_id (true: the client order id may be an ended order's,
-- place_orders_client_order_id).
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
-- Locks, in the one order of docs/order-flow.md ("Lock order"): the users'
-- shared locks (against a freeze, providers.LOCK_USERS) in user order, then
-- the accounts to hold from in id order (wallets.lock_user_accounts, as
-- settlement and the events consumer), then the order rows.
--
-- Set-based: a fixed number of statements whatever the batch's size (a
-- statement or two per order, with the batch's JSON grown order by order,
-- cost about 70 us per order). ONE statement sorts every order into
-- refused (a blocked user; a client order id used by an earlier order of
-- the batch, or taken: place_orders_client_order_id), replayed, or to
-- place; the ids of the orders to place are drawn in batch order; ONE
-- statement inserts them before the holds (a concurrent duplicate holds
-- nothing); the holds of every inserted order are ONE call of wallets'
-- set-based movement (wallets.move_funds_batch: one journal statement, one
-- balances_changed row, no subtransaction), which refuses each order on its
-- own with wallets' code and message; a refused order is deleted.
-- Generic plans: the statements take the batch as a parameter, which a
-- custom plan would be made for on every call; the generic ones are the
-- same index probes.
CREATE OR REPLACE FUNCTION place_orders_tx(p_orders jsonb)
RETURNS TABLE (item bigint, outcome text, refusal_code text, refusal text, placed orders)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_order orders;
    -- The orders answered without a write: position, outcome, code, text,
    -- the order replayed.
    v_done bigint[];
    v_outcomes text[];
    v_codes text[];
    v_texts text[];
    v_replayed orders[];
    -- The orders to place: position, id.
    v_items bigint[];
    v_ids bigint[];
    v_inserted orders[];
    v_held orders[];
    v_held_at int[];
    v_owners text[];
    v_assets text[];
    v_amounts numeric[];
    v_refs text[];
    v_next int := 1;
    v_refused bigint[] := '{}';
    v_position int;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('user:' || u.user_id, 7))
       FROM (SELECT DISTINCT e->>'user_id' AS user_id FROM jsonb_array_elements(p_orders) e
              ORDER BY 1) u;
    PERFORM wallets.lock_user_accounts(array_agg(e->>'user_id'), array_agg(e->>'hold_asset'))
       FROM jsonb_array_elements(p_orders) e;

    -- Refusals that need no write, in the order one order alone meets them
    -- (the user's block, then the client order id), and the replays.
    WITH batch AS (
        SELECT e.n AS item, o AS body,
               coalesce((e.value->>'reuse_client_order_id')::boolean, false) AS reusable,
               CASE WHEN o.client_order_id IS NULL THEN 1
                    ELSE row_number() OVER (PARTITION BY o.user_id, o.client_order_id
                                            ORDER BY e.n) END AS nth
          FROM jsonb_array_elements(p_orders) WITH ORDINALITY AS e (value, n)
         CROSS JOIN LATERAL jsonb_populate_record(NULL::orders, e.value) AS o
    ), sorted AS (
        SELECT b.item,
               CASE WHEN blocked.state IS NOT NULL OR b.nth > 1 THEN 'refused'
                    ELSE taken.outcome END AS outcome,
               CASE WHEN blocked.state IS NOT NULL THEN 'USER_' || upper(blocked.state)
                    WHEN b.nth > 1 THEN 'DUPLICATE_CLIENT_ORDER_ID'
                    ELSE taken.refusal_code END AS code,
               CASE WHEN blocked.state IS NOT NULL THEN format('this user is %s', blocked.state)
                    WHEN b.nth > 1
                    THEN format('%s is already used by this user', (b.body).client_order_id)
                    ELSE taken.refusal END AS text,
               CASE WHEN blocked.state IS NULL AND b.nth = 1 THEN taken.placed END AS replayed
          FROM batch b
          LEFT JOIN user_trading_blocks blocked ON blocked.user_id = (b.body).user_id
          LEFT JOIN LATERAL place_orders_client_order_id(b.body, b.reusable) taken
                 ON (b.body).client_order_id IS NOT NULL
    )
    SELECT array_agg(s.item ORDER BY s.item) FILTER (WHERE s.outcome IS NOT NULL),
           array_agg(s.outcome ORDER BY s.item) FILTER (WHERE s.outcome IS NOT NULL),
           array_agg(s.code ORDER BY s.item) FILTER (WHERE s.outcome IS NOT NULL),
           array_agg(s.text ORDER BY s.item) FILTER (WHERE s.outcome IS NOT NULL),
           array_agg(s.replayed ORDER BY s.item) FILTER (WHERE s.outcome IS NOT NULL),
           array_agg(s.item ORDER BY s.item) FILTER (WHERE s.outcome IS NULL)
      INTO v_done, v_outcomes, v_codes, v_texts, v_replayed, v_items
      FROM sorted s;
    RETURN QUERY
    SELECT v_done[i], v_outcomes[i], v_codes[i], v_texts[i], v_replayed[i]
      FROM generate_subscripts(v_done, 1) AS i;
    IF v_items IS NULL THEN
        RETURN;
    END IF;

    -- The ids in batch order (one nextval per row of the series, in its order).
    v_ids := ARRAY(SELECT nextval('order_ids') FROM generate_series(1, cardinality(v_items)));

    -- The orders in one statement. One another transaction placed meanwhile
    -- (same client order id) is left out here and answered below.
    WITH inserted AS (
        INSERT INTO orders (order_id, user_id, market, client_order_id, side, order_type, price,
                            quantity, quote_amount, time_in_force, post_only, stp_mode, status,
                            hold_asset, hold_amount, cap_price, cap_quantity, request_id)
        SELECT c.order_id, c.user_id, c.market, c.client_order_id, c.side, c.order_type, c.price,
               c.quantity, c.quote_amount, c.time_in_force, coalesce(c.post_only, false),
               c.stp_mode, 'new', c.hold_asset, c.hold_amount, c.cap_price, c.cap_quantity,
               c.request_id
          FROM unnest(v_items, v_ids) AS i (item, id)
         CROSS JOIN LATERAL jsonb_populate_record(NULL::orders, p_orders -> (i.item - 1)::int
                                                  || jsonb_build_object('order_id', i.id)) c
        ON CONFLICT (user_id, client_order_id)
           WHERE client_order_id IS NOT NULL AND status IN ('new', 'partially_filled')
        DO NOTHING
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

    FOR v_position IN 1 .. cardinality(v_items) LOOP
        item := v_items[v_position];
        IF v_held_at[v_next] IS DISTINCT FROM v_position THEN
            -- Another transaction took the client order id meanwhile.
            v_order := jsonb_populate_record(NULL::orders, p_orders -> (item - 1)::int);
            RETURN QUERY SELECT item, t.outcome, t.refusal_code, t.refusal, t.placed
                           FROM place_orders_client_order_id(v_order, coalesce(
                               (p_orders -> (item - 1)::int ->> 'reuse_client_order_id')::boolean,
                               false)) t;
            IF NOT FOUND THEN
                -- Its open order has ended since: the id was taken at the insert.
                outcome := 'refused';
                refusal_code := 'DUPLICATE_CLIENT_ORDER_ID';
                refusal := format('%s is already used by an open order of this user',
                                  v_order.client_order_id);
                placed := NULL;
                RETURN NEXT;
            END IF;
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
