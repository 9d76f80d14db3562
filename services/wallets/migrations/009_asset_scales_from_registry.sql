-- Asset scales come from the registry (its declared function), not from a
-- literal list here: an asset listed on the running exchange can be held at
-- once. move_funds reads wallets.asset_scales by name at run time, so the
-- view replaces the table without touching the function.
DROP TABLE wallets.asset_scales;
CREATE VIEW wallets.asset_scales AS SELECT asset, scale FROM registry.asset_scales();
