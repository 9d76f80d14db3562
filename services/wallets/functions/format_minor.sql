-- A non-negative amount in minor units as a decimal string of the asset's
-- scale (services/wallets/amounts.py format_amount, for non-negative amounts).
-- lpad also truncates a longer text, hence the greatest().
CREATE OR REPLACE FUNCTION wallets.format_minor(minor numeric, scale int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    -- services/wallets/amounts.py format_amount, for non-negative amounts
    SELECT CASE WHEN scale = 0 THEN minor::text
                ELSE left(padded, -scale) || '.' || right(padded, scale) END
      FROM (SELECT lpad(minor::text, greatest(length(minor::text), scale + 1), '0')) AS p (padded)
$$;
