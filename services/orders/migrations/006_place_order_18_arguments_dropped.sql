-- The 18-argument place_order_tx of 003 (before request ids); nothing calls
-- it since every orders process runs the 19-argument one of
-- functions/place_order_tx.sql.
DROP FUNCTION IF EXISTS place_order_tx(
    text, text, text, text, text, numeric, numeric, numeric, text, boolean, text, text,
    numeric, numeric, numeric, jsonb, text, text);
