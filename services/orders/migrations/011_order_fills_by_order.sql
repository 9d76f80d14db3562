-- The fills of one order by an index: deleting an order (place_orders_tx
-- deletes the ones wallets refused to hold) checks order_fills' foreign key
-- by order_id, which the primary key (trade_id, order_id) cannot serve: a
-- sequential scan of every fill, 21.6 ms per refused batch on the order-path
-- bench's 70,000 fills, growing with the table.
-- (Two drafts of this file, the same index, ran on the dev stack's and the
-- test databases:)
-- ran as sha256:df807a9ba5e3d1eeeec1ac6c714644d1b30009ed85fb29fe3724bd843d47b90d
-- ran as sha256:a1731a41d04d03c695e2041db540c28b065650fbdfc5b5e5367d276280ac855b
CREATE INDEX IF NOT EXISTS order_fills_by_order ON orders.order_fills (order_id);
