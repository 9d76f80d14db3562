-- Trades of a market this ledger does not know yet (its registry listing has
-- not reached us): parked durably instead of dropped, reported by health()
-- (degraded) and audit(), and settled as soon as the catalogue lists the
-- market (services/wallets/settlement.py).
CREATE TABLE wallets.parked_trades (
    market    text        NOT NULL,
    trade_id  text        NOT NULL,
    trade     jsonb       NOT NULL,
    reason    text        NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (market, trade_id)
);
