-- move_funds reads each asset's scale from registry.asset_scales() itself
-- (functions/move_funds.sql); the view of 009 has no reader left.
DROP VIEW IF EXISTS wallets.asset_scales;
