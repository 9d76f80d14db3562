-- orders.held_totals (migration 015) kept by the statements that write
-- orders.orders: per (user, asset), each statement's change of
-- hold_amount - released_amount, summed over its rows (statement-level
-- triggers with transition tables: one upsert per user and asset per
-- statement, not per order). Rows whose change is zero (a fill, a cancel
-- request) write nothing. The upserts go in (user, asset) order, and every
-- writer of a hold or a release has locked the same users' accounts first
-- (acceptance, an amend, an order's end), so they add no lock order of their
-- own. TRUNCATE empties the totals with the orders.
--
-- Each branch is one statement of this function, so PL/pgSQL plans it once
-- per session. Until 2026-12-07 the branches built a JSON array of the
-- changes and handed it to orders.add_held_totals, a LANGUAGE sql function:
-- PostgreSQL 15 parses and plans such a function's body on every call, and
-- these triggers fire on every acceptance batch and every events-consumer
-- statement (about 0.5 ms each for one order, most of it planning;
-- bench/README.md, session 23).
CREATE OR REPLACE FUNCTION orders.keep_held_totals()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Transition tables exist only for their own event: one branch each.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO orders.held_totals AS t (user_id, asset, held)
        SELECT n.user_id, n.hold_asset, sum(n.hold_amount - coalesce(n.released_amount, 0))
          FROM new_rows n
         GROUP BY n.user_id, n.hold_asset
        HAVING sum(n.hold_amount - coalesce(n.released_amount, 0)) <> 0
         ORDER BY n.user_id, n.hold_asset
        ON CONFLICT (user_id, asset) DO UPDATE SET held = t.held + excluded.held;
    ELSIF TG_OP = 'UPDATE' THEN
        -- Only the rows whose hold, release, user or asset changed (a fill's
        -- update changes none of them): the new amount added, the old one
        -- taken away.
        INSERT INTO orders.held_totals AS t (user_id, asset, held)
        SELECT c.user_id, c.asset, sum(c.held)
          FROM new_rows n
          JOIN old_rows o USING (order_id)
         CROSS JOIN LATERAL (VALUES
                  (n.user_id, n.hold_asset, n.hold_amount - coalesce(n.released_amount, 0)),
                  (o.user_id, o.hold_asset, coalesce(o.released_amount, 0) - o.hold_amount))
               AS c (user_id, asset, held)
         WHERE (n.user_id, n.hold_asset, n.hold_amount, n.released_amount)
               IS DISTINCT FROM (o.user_id, o.hold_asset, o.hold_amount, o.released_amount)
         GROUP BY c.user_id, c.asset
        HAVING sum(c.held) <> 0
         ORDER BY c.user_id, c.asset
        ON CONFLICT (user_id, asset) DO UPDATE SET held = t.held + excluded.held;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO orders.held_totals AS t (user_id, asset, held)
        SELECT o.user_id, o.hold_asset, sum(coalesce(o.released_amount, 0) - o.hold_amount)
          FROM old_rows o
         GROUP BY o.user_id, o.hold_asset
        HAVING sum(coalesce(o.released_amount, 0) - o.hold_amount) <> 0
         ORDER BY o.user_id, o.hold_asset
        ON CONFLICT (user_id, asset) DO UPDATE SET held = t.held + excluded.held;
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

-- Its one caller was this function (above, until 2026-12-07).
DROP FUNCTION IF EXISTS orders.add_held_totals(jsonb);
