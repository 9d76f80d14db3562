-- Each asset's scale, for ledgers that check amounts in SQL (wallets' holds).
CREATE OR REPLACE FUNCTION registry.asset_scales() RETURNS TABLE (asset text, scale int)
LANGUAGE sql STABLE AS $$
    SELECT symbol, scale FROM registry.assets
$$;
