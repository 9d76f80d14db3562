-- balances_changed, announced through the transactional outbox by the ledger
-- itself: every statement that posts to user accounts (settlement, deposits,
-- withdrawals, holds and releases -- including wallets.hold_funds /
-- release_funds inside orders' place_orders_tx) writes one outbox row in the
-- same transaction. A crash between the commit and the publish loses nothing:
-- the wallets relay (stream 'wallets') publishes the row after restart.
-- Payload: services/common/events.py BALANCES_CHANGED (version 1).
CREATE OR REPLACE FUNCTION wallets.announce_balances_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_changes jsonb;
BEGIN
    SELECT jsonb_agg(jsonb_build_object('user', owner, 'asset', asset) ORDER BY owner, asset)
      INTO v_changes
      FROM (SELECT DISTINCT a.owner, a.asset
              FROM new_postings p JOIN wallets.accounts a ON a.id = p.account_id
             WHERE a.kind = 'user') AS changed;
    IF v_changes IS NOT NULL THEN
        INSERT INTO public.outbox (stream, exchange, routing_key, message_id, payload)
        VALUES ('wallets', 'wallets.events', 'balances_changed',
                'balances:' || gen_random_uuid(),
                jsonb_build_object('event_version', 1, 'changes', v_changes));
        PERFORM pg_notify('outbox_wallets', '');
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER postings_announce_balances AFTER INSERT ON wallets.postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION wallets.announce_balances_changed();
