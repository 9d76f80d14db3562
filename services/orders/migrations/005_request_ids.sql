-- ran as sha256:84153a72338c5a3cc3e7adba22fc4891883353dbc8d9eb503ff51cf2208f12df
-- A redelivered place_order request is answered with the order it placed,
-- while another request reusing the client order id is refused: each order
-- records the id of the request that placed it (the AMQP correlation id, the
-- same on every redelivery), and place_order_tx takes it as a 19th argument.
-- The function is functions/place_order_tx.sql.
ALTER TABLE orders ADD COLUMN request_id text;

