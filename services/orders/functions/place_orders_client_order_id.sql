-- place_orders_client_order_id: what place_orders_tx answers for an order
-- whose client order id this user has already used: the order itself when
-- the same request placed it (a redelivery: 'replayed', whatever the order's
-- state now), else the duplicate refusal ('refused') while an open order has
-- the id. No row when the id is free: never used, or used only by orders
-- that have ended (unique among open orders, as on Binance: migration 014).
CREATE OR REPLACE FUNCTION place_orders_client_order_id(p_order orders)
RETURNS TABLE (outcome text, refusal_code text, refusal text, placed orders)
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN same THEN 'replayed' ELSE 'refused' END,
           CASE WHEN same THEN NULL ELSE 'DUPLICATE_CLIENT_ORDER_ID' END,
           CASE WHEN same THEN NULL
                ELSE format('%s is already used by an open order of this user',
                            p_order.client_order_id) END,
           CASE WHEN same THEN taken END
      FROM (SELECT o AS taken,
                   coalesce(p_order.request_id IS NOT NULL AND o.request_id = p_order.request_id,
                            false) AS same
              FROM orders o
             WHERE o.user_id = p_order.user_id AND o.client_order_id = p_order.client_order_id
             ORDER BY 2 DESC, o.status IN ('new', 'partially_filled') DESC
             LIMIT 1
           ) existing
     WHERE same OR (taken).status IN ('new', 'partially_filled')
$$;
