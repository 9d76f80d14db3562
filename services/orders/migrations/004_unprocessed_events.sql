-- Matching events the orders service could not apply even on their own (a
-- malformed event, an order that spent more than it held): parked here with
-- the error so the stream goes on; `health` reports how many there are, and
-- each one needs an operator.
CREATE TABLE unprocessed_events (
    message_id  text        PRIMARY KEY,
    routing_key text        NOT NULL,
    body        jsonb       NOT NULL,
    error       text        NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now()
);

-- Leftovers are now released in the transaction that ends the order
-- (wallets.release_funds); this table only keeps its history.
COMMENT ON TABLE pending_releases IS 'history: leftovers released through the wallets RPC before migration 004';
