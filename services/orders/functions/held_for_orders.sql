-- orders.held_for_orders: what orders says wallets holds for its orders, per
-- (user, asset): every order's hold (placed plus amends) less what its end
-- released. For wallets' audit (services/wallets/audit.py,
-- hold_without_order), which compares it with the journal's entries keyed by
-- order (hold:order:<id>[:amend:<n>], release:order:<id>:final). Both sides
-- count holds and releases only, each written in the same transaction as the
-- order row it belongs to, so a fill executed but not yet settled cannot make
-- them differ.
-- SECURITY DEFINER: wallets calls it without any right on orders' tables.
CREATE OR REPLACE FUNCTION orders.held_for_orders()
RETURNS TABLE (user_id text, asset text, held numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT o.user_id, o.hold_asset, sum(o.hold_amount - coalesce(o.released_amount, 0))
      FROM orders.orders o
     GROUP BY o.user_id, o.hold_asset
$$;
GRANT USAGE ON SCHEMA orders TO wallets;
REVOKE ALL ON FUNCTION orders.held_for_orders() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orders.held_for_orders() TO wallets;
