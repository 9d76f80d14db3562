-- The finished orders that still hold funds, by an index of them alone
-- (orders.finished_orders_holding, for wallets' audit): the audit read every
-- finished order, the whole history (94 ms on the dev stack's 64,000 orders,
-- 300 ms on the order-path bench's 461,000), for what is normally no row at
-- all. The predicate is the function's, word for word (the planner uses a
-- partial index only for a query that implies it). Its columns are read at
-- every update for HOT: a fill of an order already partially filled (its
-- status unchanged) is no longer a HOT update; the first fill and the end
-- change the status, which orders_open names already.
CREATE INDEX IF NOT EXISTS orders_finished_holding ON orders.orders (order_id)
 WHERE status IN ('filled', 'cancelled', 'expired', 'rejected')
   AND hold_amount - coalesce(released_amount, 0)
       - CASE side WHEN 'sell' THEN filled_quantity ELSE filled_quote END <> 0;
