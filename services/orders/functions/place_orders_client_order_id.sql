-- place_orders_client_order_id: what place_orders_tx answers for an order
-- whose client order id this user has already used: the order itself when
-- the same request placed it (a redelivery: 'replayed'), else the duplicate
-- refusal ('refused'). No row when the id is free.
CREATE OR REPLACE FUNCTION place_orders_client_order_id(p_order orders)
RETURNS TABLE (outcome text, refusal_code text, refusal text, placed orders)
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN same THEN 'replayed' ELSE 'refused' END,
           CASE WHEN same THEN NULL ELSE 'DUPLICATE_CLIENT_ORDER_ID' END,
           CASE WHEN same THEN NULL
                ELSE format('%s is already used by this user', p_order.client_order_id) END,
           CASE WHEN same THEN taken END
      FROM (SELECT o AS taken,
                   coalesce(p_order.request_id IS NOT NULL AND o.request_id = p_order.request_id,
                            false) AS same
              FROM orders o
             WHERE o.user_id = p_order.user_id AND o.client_order_id = p_order.client_order_id
           ) existing
$$;
