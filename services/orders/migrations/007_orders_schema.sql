-- The orders service's tables in their own schema. place_order_tx moves too:
-- its function file creates orders.place_order_tx.
CREATE SCHEMA orders;
ALTER TABLE public.orders SET SCHEMA orders;
ALTER TABLE public.order_fills SET SCHEMA orders;
ALTER TABLE public.pending_releases SET SCHEMA orders;
ALTER TABLE public.user_trading_blocks SET SCHEMA orders;
ALTER TABLE public.unprocessed_events SET SCHEMA orders;
ALTER SEQUENCE public.order_ids SET SCHEMA orders;
DROP FUNCTION IF EXISTS public.place_order_tx(
    text, text, text, text, text, numeric, numeric, numeric, text, boolean, text, text,
    numeric, numeric, numeric, jsonb, text, text, text);
