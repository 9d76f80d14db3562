-- requires: orders/add_held_totals
-- orders.held_totals (migration 015) kept by the statements that write
-- orders.orders: per (user, asset), each statement's change of
-- hold_amount - released_amount, summed over its rows (statement-level
-- triggers with transition tables: one upsert per user and asset per
-- statement, not per order). Rows whose change is zero (a fill, a cancel
-- request) write nothing. The upserts go in (user, asset) order, and every
-- writer of a hold or a release has locked the same users' accounts first
-- (acceptance, an amend, an order's end), so they add no lock order of their
-- own. TRUNCATE empties the totals with the orders.
CREATE OR REPLACE FUNCTION orders.keep_held_totals()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Transition tables exist only for their own event: one branch each.
    IF TG_OP = 'INSERT' THEN
        PERFORM orders.add_held_totals((
            SELECT jsonb_agg(jsonb_build_object(
                       'user_id', n.user_id, 'asset', n.hold_asset,
                       'held', n.hold_amount - coalesce(n.released_amount, 0)))
              FROM new_rows n
             WHERE n.hold_amount - coalesce(n.released_amount, 0) <> 0));
    ELSIF TG_OP = 'UPDATE' THEN
        -- Only the rows whose hold, release, user or asset changed (a fill's
        -- update changes none of them).
        PERFORM orders.add_held_totals((
            WITH changed AS (
                SELECT n.user_id AS new_user, n.hold_asset AS new_asset,
                       n.hold_amount - coalesce(n.released_amount, 0) AS new_held,
                       o.user_id AS old_user, o.hold_asset AS old_asset,
                       o.hold_amount - coalesce(o.released_amount, 0) AS old_held
                  FROM new_rows n JOIN old_rows o USING (order_id)
                 WHERE (n.user_id, n.hold_asset, n.hold_amount, n.released_amount)
                       IS DISTINCT FROM (o.user_id, o.hold_asset, o.hold_amount, o.released_amount))
            SELECT jsonb_agg(c)
              FROM (SELECT jsonb_build_object('user_id', new_user, 'asset', new_asset,
                                              'held', new_held) AS c FROM changed
                    UNION ALL
                    SELECT jsonb_build_object('user_id', old_user, 'asset', old_asset,
                                              'held', -old_held) FROM changed) AS changes));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM orders.add_held_totals((
            SELECT jsonb_agg(jsonb_build_object(
                       'user_id', o.user_id, 'asset', o.hold_asset,
                       'held', coalesce(o.released_amount, 0) - o.hold_amount))
              FROM old_rows o
             WHERE o.hold_amount - coalesce(o.released_amount, 0) <> 0));
    ELSE
        DELETE FROM orders.held_totals;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER held_totals_on_insert AFTER INSERT ON orders.orders
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION orders.keep_held_totals();
CREATE OR REPLACE TRIGGER held_totals_on_update AFTER UPDATE ON orders.orders
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION orders.keep_held_totals();
CREATE OR REPLACE TRIGGER held_totals_on_delete AFTER DELETE ON orders.orders
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION orders.keep_held_totals();
CREATE OR REPLACE TRIGGER held_totals_on_truncate AFTER TRUNCATE ON orders.orders
    FOR EACH STATEMENT EXECUTE FUNCTION orders.keep_held_totals();
