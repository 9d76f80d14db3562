-- Transactional outbox: messages written in the same transaction as the change
-- they announce, published afterwards by one relay per stream, in id order.
-- A row is deleted once the broker has confirmed it; a crash in between means
-- the message is published again, so consumers dedupe by message_id.
CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    stream      text        NOT NULL,
    exchange    text        NOT NULL,
    routing_key text        NOT NULL,
    message_id  text        NOT NULL,
    payload     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_stream_id ON outbox (stream, id);
