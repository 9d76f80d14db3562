-- Refusals decided in SQL carry their code as data (docs/errors.md):
-- place_orders_tx and place_orders_client_order_id answer a refusal's code in
-- a column of its own (refusal_code) beside its text, a new result type, so
-- the old functions go; their files create the new ones. place_order_tx (one
-- order alone) has had no caller since acceptance went through
-- place_orders_tx: dropped with its file.
DROP FUNCTION IF EXISTS public.place_orders_tx(jsonb);
DROP FUNCTION IF EXISTS public.place_orders_client_order_id(orders.orders);
DROP FUNCTION IF EXISTS orders.place_order_tx(
    text, text, text, text, text, numeric, numeric, numeric, text, boolean, text, text,
    numeric, numeric, numeric, jsonb, text, text, text);
