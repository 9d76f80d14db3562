-- ran as sha256:c64f8eef0f38aa9396f655fbfbf4c4eb5ad24864d18c492a443521935d2510ec
-- What orders holds per (user, asset), kept as the orders change, for
-- wallets' periodic audit (hold_without_order, orders.held_for_orders_kept):
-- the audit summed every order ever placed once a minute (1.6 s of
-- PostgreSQL on the order-path bench's 1.5 M orders, growing with the
-- history); the triggers of functions/keep_held_totals.sql keep these sums in the
-- transactions that change an order's hold or release, so the periodic audit
-- reads one row per user and asset. The full audit still sums every order
-- and compares it with these (held_totals_drift).
-- Migrations and function files apply in ONE transaction: the lock keeps the
-- writers out from the sums below until the triggers exist, so no change is
-- missed or counted twice.
LOCK TABLE orders.orders IN SHARE ROW EXCLUSIVE MODE;
CREATE TABLE orders.held_totals (
    user_id text    NOT NULL,
    asset   text    NOT NULL,
    held    numeric NOT NULL,
    PRIMARY KEY (user_id, asset)
);
INSERT INTO orders.held_totals (user_id, asset, held)
SELECT user_id, hold_asset, sum(hold_amount - coalesce(released_amount, 0))
  FROM orders.orders
 GROUP BY user_id, hold_asset;
