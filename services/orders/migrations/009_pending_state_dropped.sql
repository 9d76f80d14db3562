-- Dead since orders are written with their hold in one transaction
-- (place_order_tx): the 'pending' state (written, funds not yet held) and
-- pending_releases (leftovers released through the wallets RPC before
-- migration 004; empty). An order's status is now one of the states below.
DROP TABLE orders.pending_releases;
DROP INDEX orders.orders_pending;
DROP INDEX orders.orders_open;
CREATE INDEX orders_open ON orders.orders (user_id, market) WHERE status IN ('new', 'partially_filled');
ALTER TABLE orders.orders ADD CONSTRAINT orders_status_valid
    CHECK (status IN ('new', 'partially_filled', 'filled', 'cancelled', 'expired', 'rejected'));
