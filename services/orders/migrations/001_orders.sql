-- Orders as the orders service knows them. Amounts are NUMERIC decimal values
-- on the market's grid (validated before insert); never floats.
CREATE SEQUENCE order_ids;

CREATE TABLE orders (
    order_id        bigint      PRIMARY KEY,
    user_id         text        NOT NULL,
    market          text        NOT NULL,
    client_order_id text,
    side            text        NOT NULL CHECK (side IN ('buy', 'sell')),
    order_type      text        NOT NULL CHECK (order_type IN ('limit', 'market')),
    price           numeric,
    quantity        numeric,
    quote_amount    numeric,
    time_in_force   text        NOT NULL,
    post_only       boolean     NOT NULL DEFAULT false,
    stp_mode        text,
    -- pending: written, funds not yet held; new/partially_filled: with the engine;
    -- filled, cancelled, expired, rejected: final.
    status          text        NOT NULL,
    reason          text,
    hold_asset      text        NOT NULL,
    hold_amount     numeric     NOT NULL DEFAULT 0 CHECK (hold_amount >= 0),
    -- The hold covers cap_price x cap_quantity (the highest of each an amend ever set).
    cap_price       numeric,
    cap_quantity    numeric,
    amends          integer     NOT NULL DEFAULT 0,
    filled_quantity numeric     NOT NULL DEFAULT 0,
    filled_quote    numeric     NOT NULL DEFAULT 0,
    released_amount numeric,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX orders_client_order_id ON orders (user_id, client_order_id)
    WHERE client_order_id IS NOT NULL;
CREATE INDEX orders_open ON orders (user_id, market) WHERE status IN ('pending', 'new', 'partially_filled');
CREATE INDEX orders_history ON orders (user_id, order_id DESC);
CREATE INDEX orders_pending ON orders (created_at) WHERE status = 'pending';

-- Each fill of an order, once (a trade has two rows: maker and taker side).
CREATE TABLE order_fills (
    trade_id       text    NOT NULL,
    order_id       bigint  NOT NULL REFERENCES orders (order_id),
    market         text    NOT NULL,
    price          numeric NOT NULL,
    quantity       numeric NOT NULL,
    quote_quantity numeric NOT NULL,
    is_maker       boolean NOT NULL,
    executed_at    bigint  NOT NULL,
    PRIMARY KEY (trade_id, order_id)
);

-- Leftover funds to give back when an order ends, written in the same
-- transaction as the final state; a loop calls wallets.release (idempotent by
-- ref) and marks them done, so a crash between the two loses nothing.
CREATE TABLE pending_releases (
    ref        text        PRIMARY KEY,
    order_id   bigint      NOT NULL REFERENCES orders (order_id),
    user_id    text        NOT NULL,
    asset      text        NOT NULL,
    amount     numeric     NOT NULL CHECK (amount > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    done_at    timestamptz
);
CREATE INDEX pending_releases_todo ON pending_releases (created_at) WHERE done_at IS NULL;
