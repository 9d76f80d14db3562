-- place_orders_client_order_id: what place_orders_tx answers for an order
-- whose client order id this user has already used: the order itself when
-- the same request placed it (a redelivery: 'replayed', whatever the order's
-- state now), else the duplicate refusal ('refused') -- while an open order
-- has the id, or, unless ``p_reusable``, any order ever had it. No row when
-- the id is free. ``p_reusable``: Binance's rule ("A unique id among open
-- orders": the partner API asks for it), where an ended order's id places a
-- new order; without it the id is the user's for good, so that a caller's
-- retry with it is safe whatever became of the first (docs/order-flow.md).
DROP FUNCTION IF EXISTS place_orders_client_order_id(orders);
CREATE OR REPLACE FUNCTION place_orders_client_order_id(p_order orders, p_reusable boolean)
RETURNS TABLE (outcome text, refusal_code text, refusal text, placed orders)
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN same THEN 'replayed' ELSE 'refused' END,
           CASE WHEN same THEN NULL ELSE 'DUPLICATE_CLIENT_ORDER_ID' END,
           CASE WHEN same THEN NULL
                WHEN open THEN format('%s is already used by an open order of this user',
                                      p_order.client_order_id)
                ELSE format('%s is already used by this user', p_order.client_order_id) END,
           CASE WHEN same THEN taken END
      FROM (SELECT o AS taken,
                   coalesce(p_order.request_id IS NOT NULL AND o.request_id = p_order.request_id,
                            false) AS same,
                   o.status IN ('new', 'partially_filled') AS open
              FROM orders o
             WHERE o.user_id = p_order.user_id AND o.client_order_id = p_order.client_order_id
             ORDER BY 2 DESC, 3 DESC, o.order_id DESC
             LIMIT 1
           ) existing
     WHERE same OR open OR NOT coalesce(p_reusable, false)
$$;
