-- An order's end that arrived before one of its fills (the engine's
-- cumulative filled quantity is above what the order has recorded): the
-- matching relay republishes a batch the broker refused after the batches it
-- had in flight behind it, so an engine batch with the fill can come after
-- the one with the end. Releasing then would release the unfilled part of
-- the fill too. The end waits here, and the delivery with the missing fill
-- finishes it (services/orders/providers.MatchingEvents).
CREATE TABLE IF NOT EXISTS orders.pending_order_ends (
    order_id        bigint      PRIMARY KEY,
    market          text        NOT NULL,
    user_id         text        NOT NULL,
    status          text        NOT NULL,
    reason          text,
    filled_quantity numeric     NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now()
);
