-- place_order_tx: everything that accepts an order, in one statement (so one
-- round trip, and in autocommit one transaction): the user's shared lock
-- (serialising against a freeze, see user_lock in providers.py), the trading
-- block check, the order row, its hold (wallets.hold_funds) and its engine
-- command in the outbox. Refusals are raised as "CODE: message" (SQLSTATE
-- P0001) and leave nothing behind.
-- A redelivered request (same request id, the AMQP correlation id) is
-- answered with the order it placed; another request reusing the client order
-- id is refused as a duplicate.
CREATE OR REPLACE FUNCTION orders.place_order_tx(
    p_user text, p_market text, p_client_order_id text, p_side text, p_order_type text,
    p_price numeric, p_quantity numeric, p_quote_amount numeric, p_time_in_force text,
    p_post_only boolean, p_stp_mode text, p_hold_asset text, p_hold_amount numeric,
    p_cap_price numeric, p_cap_quantity numeric,
    p_command jsonb, p_outbox_stream text, p_command_queue text, p_request_id text)
RETURNS orders.orders
LANGUAGE plpgsql AS $$
DECLARE
    v_block text;
    v_order orders.orders;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('user:' || p_user, 7));
    SELECT state INTO v_block FROM orders.user_trading_blocks WHERE user_id = p_user;
    IF FOUND THEN
        RAISE EXCEPTION 'USER_%: this user is %', upper(v_block), v_block;
    END IF;

    INSERT INTO orders.orders (order_id, user_id, market, client_order_id, side, order_type, price,
                        quantity, quote_amount, time_in_force, post_only, stp_mode, status,
                        hold_asset, hold_amount, cap_price, cap_quantity, request_id)
    VALUES (nextval('orders.order_ids'), p_user, p_market, p_client_order_id, p_side, p_order_type,
            p_price, p_quantity, p_quote_amount, p_time_in_force, p_post_only, p_stp_mode, 'new',
            p_hold_asset, p_hold_amount, p_cap_price, p_cap_quantity, p_request_id)
    ON CONFLICT (user_id, client_order_id) WHERE client_order_id IS NOT NULL DO NOTHING
    RETURNING * INTO v_order;
    IF NOT FOUND THEN
        -- The same request run before (redelivered after a process died
        -- between its commit and its reply): its outcome, nothing new.
        SELECT * INTO v_order FROM orders.orders
         WHERE user_id = p_user AND client_order_id = p_client_order_id;
        IF p_request_id IS NOT NULL AND v_order.request_id = p_request_id THEN
            RETURN v_order;
        END IF;
        RAISE EXCEPTION 'DUPLICATE_CLIENT_ORDER_ID: % is already used by this user', p_client_order_id;
    END IF;

    PERFORM wallets.hold_funds(p_user, p_hold_asset, p_hold_amount, 'order:' || v_order.order_id);

    -- As services/common/outbox.py enqueue_command: the command queue through
    -- the default exchange, the relay woken at commit.
    INSERT INTO public.outbox (stream, exchange, routing_key, message_id, payload)
    VALUES (p_outbox_stream, '', p_command_queue, 'place:' || v_order.order_id,
            jsonb_build_object('command',
                               p_command || jsonb_build_object('order_id', v_order.order_id)));
    PERFORM pg_notify('outbox_' || p_outbox_stream, '');
    RETURN v_order;
END;
$$;
REVOKE ALL ON FUNCTION orders.place_order_tx(
    text, text, text, text, text, numeric, numeric, numeric, text, boolean, text, text,
    numeric, numeric, numeric, jsonb, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orders.place_order_tx(
    text, text, text, text, text, numeric, numeric, numeric, text, boolean, text, text,
    numeric, numeric, numeric, jsonb, text, text, text) TO orders;
