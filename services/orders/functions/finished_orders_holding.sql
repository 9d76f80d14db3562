-- orders.finished_orders_holding: finished orders (filled, cancelled, expired,
-- rejected) for which funds stay held: their hold less what their fills spent
-- (a sell spends base, a buy quote) less what their end released is not zero.
-- A finished order's fills all came before its end (the engine's stream), so
-- nothing is left to spend what stays held: no open order explains it. For
-- wallets' audit (held_for_finished_order); at most p_limit rows. The WHERE is
-- the predicate of the partial index orders_finished_holding (migration 012),
-- word for word: the read costs the rows found, not the history.
-- SECURITY DEFINER: wallets calls it without any right on orders' tables.
CREATE OR REPLACE FUNCTION orders.finished_orders_holding(p_limit int)
RETURNS TABLE (order_id bigint, user_id text, asset text, status text, still_held numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT o.order_id, o.user_id, o.hold_asset, o.status,
           o.hold_amount - coalesce(o.released_amount, 0)
           - CASE o.side WHEN 'sell' THEN o.filled_quantity ELSE o.filled_quote END
      FROM orders.orders o
     WHERE o.status IN ('filled', 'cancelled', 'expired', 'rejected')
       AND o.hold_amount - coalesce(o.released_amount, 0)
           - CASE o.side WHEN 'sell' THEN o.filled_quantity ELSE o.filled_quote END <> 0
     ORDER BY o.order_id
     LIMIT p_limit
$$;
GRANT USAGE ON SCHEMA orders TO wallets;
REVOKE ALL ON FUNCTION orders.finished_orders_holding(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orders.finished_orders_holding(int) TO wallets;
