-- wallets.format_minor of 007 padded with lpad(text, scale + 1), and lpad
-- also TRUNCATES a longer text: 1,000 USDT (1000000000 minor units) came out
-- as "1.000000". Postings were always right (they are minor units); what was
-- wrong is the "amount" in the details of holds and releases taken through
-- wallets.hold_funds / release_funds of 10 units or more, and the amounts in
-- their refusal messages. The journal is append-only, so details written
-- before this migration stay as they are (development data only: nothing
-- had been deployed); a provider replay of such a hold reports
-- IDEMPOTENCY_CONFLICT instead of recognising it.
CREATE OR REPLACE FUNCTION wallets.format_minor(minor numeric, scale int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    -- services/wallets/amounts.py format_amount, for non-negative amounts
    SELECT CASE WHEN scale = 0 THEN minor::text
                ELSE left(padded, -scale) || '.' || right(padded, scale) END
      FROM (SELECT lpad(minor::text, greatest(length(minor::text), scale + 1), '0')) AS p (padded)
$$;
