-- Journal details are written once and read back whole (replays, history
-- pages), never queried inside: plain json (validated text, key order kept)
-- costs half as much to write as jsonb, which was ~10% of settling a trade.
ALTER TABLE wallets.transactions ALTER COLUMN details DROP DEFAULT;
ALTER TABLE wallets.transactions ALTER COLUMN details TYPE json USING details::json;
ALTER TABLE wallets.transactions ALTER COLUMN details SET DEFAULT '{}'::json;
