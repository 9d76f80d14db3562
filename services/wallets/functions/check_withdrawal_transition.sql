-- The withdrawal state machine, enforced by the database:
-- pending --approve--> approved --mark_sent--> sent
--    |                    |
--    +--reject--> rejected <--reject--+
--    +--cancel--> cancelled
-- The money moves in journal transactions (hold on request, release on reject
-- or cancel, withdrawal + fee on sent); every step is one row of
-- withdrawal_transitions.

CREATE OR REPLACE FUNCTION wallets.check_withdrawal_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'pending' THEN
            RAISE EXCEPTION 'ILLEGAL_WITHDRAWAL_TRANSITION: a withdrawal starts pending'
                  USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF (NEW.request_key, NEW.user_id, NEW.asset, NEW.account_id, NEW.address, NEW.amount, NEW.fee,
        NEW.created_at)
       IS DISTINCT FROM
       (OLD.request_key, OLD.user_id, OLD.asset, OLD.account_id, OLD.address, OLD.amount, OLD.fee,
        OLD.created_at) THEN
        RAISE EXCEPTION 'LEDGER_GUARD: only the status, txid and updated_at of a withdrawal change'
              USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND (OLD.status, NEW.status) NOT IN (
        ('pending', 'approved'), ('pending', 'rejected'), ('pending', 'cancelled'),
        ('approved', 'rejected'), ('approved', 'sent')) THEN
        RAISE EXCEPTION 'ILLEGAL_WITHDRAWAL_TRANSITION: % -> %', OLD.status, NEW.status
              USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER withdrawals_state_machine BEFORE INSERT OR UPDATE ON wallets.withdrawals
    FOR EACH ROW EXECUTE FUNCTION wallets.check_withdrawal_transition();
