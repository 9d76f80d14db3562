-- orders.add_held_totals: per (user, asset), adds each change of a
-- statement's rows to orders.held_totals (migration 015), summed, in (user,
-- asset) order; zero sums write nothing. Called by keep_held_totals.
CREATE OR REPLACE FUNCTION orders.add_held_totals(p_changes jsonb)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO orders.held_totals AS t (user_id, asset, held)
    SELECT c.user_id, c.asset, sum(c.held)
      FROM jsonb_to_recordset(p_changes) AS c (user_id text, asset text, held numeric)
     GROUP BY c.user_id, c.asset
    HAVING sum(c.held) <> 0
     ORDER BY c.user_id, c.asset
    ON CONFLICT (user_id, asset) DO UPDATE SET held = t.held + excluded.held
$$;
