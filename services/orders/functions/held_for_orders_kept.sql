-- orders.held_for_orders_kept: orders.held_for_orders's sums as the
-- triggers of keep_held_totals.sql keep them (orders.held_totals, migration
-- 015): one row per user and asset, not a read of every order. For wallets' periodic audit;
-- its full audit compares the two (held_totals_drift).
CREATE OR REPLACE FUNCTION orders.held_for_orders_kept()
RETURNS TABLE (user_id text, asset text, held numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.user_id, t.asset, t.held FROM orders.held_totals t
$$;
REVOKE ALL ON FUNCTION orders.held_for_orders_kept() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orders.held_for_orders_kept() TO wallets;
