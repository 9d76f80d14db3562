-- balances_changed, announced through the transactional outbox by the ledger
-- itself: every statement that posts to user accounts (settlement, deposits,
-- withdrawals, holds and releases -- including wallets.hold_funds /
-- release_funds inside orders' place_orders_tx) writes one outbox row in the
-- same transaction. A crash between the commit and the publish loses nothing:
-- the wallets relay (stream 'wallets') publishes the row after restart.
-- Payload: services/common/events.py BALANCES_CHANGED (version 1).
--
-- Called by the postings' balance trigger (apply_postings.sql) with the user
-- accounts its UPDATE moved -- it has those rows in hand, so the statement
-- needs no second pass over the new postings and no join to the accounts (a
-- trigger of its own did both: a hash join over a sequential scan of every
-- account, about a quarter of a settlement statement's time).
-- p_changes: [{user, asset}, ...] ordered by user then asset, or NULL when
-- the statement moved no user account (nothing is announced).
--
-- A settlement batch's payload is some 20 KB (8 KB compressed), so it is
-- stored compressed out of line: lz4 instead of the server's default pglz
-- costs a third of the insert (about 0.1 against 0.3 ms a batch). The
-- setting is this function's own, for the rows it writes; readers
-- decompress either kind.
CREATE OR REPLACE FUNCTION wallets.announce_balances_changed(p_changes jsonb) RETURNS void
LANGUAGE plpgsql SET default_toast_compression = lz4 AS $$
BEGIN
    IF p_changes IS NOT NULL THEN
        INSERT INTO public.outbox (stream, exchange, routing_key, message_id, payload)
        VALUES ('wallets', 'wallets.events', 'balances_changed',
                'balances:' || gen_random_uuid(),
                jsonb_build_object('event_version', 1, 'changes', p_changes));
        PERFORM pg_notify('outbox_wallets', '');
    END IF;
END $$;
-- Only the balance trigger calls it: as the wallets role when that role
-- posts, as the owner inside the SECURITY DEFINER functions (hold_funds,
-- move_funds_batch, ...). No other role may write balances_changed rows.
REVOKE ALL ON FUNCTION wallets.announce_balances_changed(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wallets.announce_balances_changed(jsonb) TO wallets;

-- Until 2026-12-05 it was a statement trigger of its own on wallets.postings;
-- applied in the same transaction as apply_postings.sql, which calls it now.
DROP TRIGGER IF EXISTS postings_announce_balances ON wallets.postings;
DROP FUNCTION IF EXISTS wallets.announce_balances_changed();
