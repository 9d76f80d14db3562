-- A client order id is unique among the user's OPEN orders, as on Binance
-- (newClientOrderId: "A unique id among open orders"): once its order has
-- ended, a bot may use the id again. The unique index covers the open orders
-- only (the predicate is orders_open's, word for word: place_orders_tx's
-- ON CONFLICT names it); the lookups by client order id (a redelivered
-- request's replay, get_order by client order id) keep an index of every
-- order that has one.
CREATE INDEX orders_by_client_order_id ON orders.orders (user_id, client_order_id)
 WHERE client_order_id IS NOT NULL;
DROP INDEX orders.orders_client_order_id;
CREATE UNIQUE INDEX orders_client_order_id_open ON orders.orders (user_id, client_order_id)
 WHERE client_order_id IS NOT NULL AND status IN ('new', 'partially_filled');
