-- Trades the ledger refused to settle (e.g. a locked balance short of the
-- trade): parked here so the rest of the stream keeps settling; audit() reports
-- every row until an operator resolves it.
CREATE TABLE wallets.unsettled_trades (
    market    text        NOT NULL,
    trade_id  text        NOT NULL,
    trade     jsonb       NOT NULL,
    error     text        NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (market, trade_id)
);
