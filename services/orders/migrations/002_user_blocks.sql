-- Users who may not trade (frozen or closed), from the users service's events.
-- place_order refuses them; the event also cancels their open orders.
CREATE TABLE user_trading_blocks (
    user_id    text        PRIMARY KEY,
    state      text        NOT NULL CHECK (state IN ('frozen', 'closed')),
    event_at   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
