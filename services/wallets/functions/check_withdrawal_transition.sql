-- The withdrawal state machine: this trigger is its only statement of which
-- steps are legal (withdrawals.py names the status each action leads to and
-- leaves the verdict to it):
-- pending --approve--> approved --mark_sent--> sent
--    |                    |
--    +--reject--> rejected <--reject--+
--    +--cancel--> cancelled
-- A txid, once recorded, never changes. An illegal step is a coded refusal
-- (SQLSTATE EX001, HINT ILLEGAL_WITHDRAWAL_TRANSITION, docs/errors.md).
-- The money moves in journal transactions (hold on request, release on reject
-- or cancel, withdrawal + fee on sent); every step is one row of
-- withdrawal_transitions.

CREATE OR REPLACE FUNCTION wallets.check_withdrawal_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_illegal text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        v_illegal := CASE WHEN NEW.status <> 'pending' THEN 'a withdrawal starts pending' END;
    ELSIF (NEW.request_key, NEW.user_id, NEW.asset, NEW.account_id, NEW.address, NEW.amount, NEW.fee,
           NEW.created_at)
          IS DISTINCT FROM
          (OLD.request_key, OLD.user_id, OLD.asset, OLD.account_id, OLD.address, OLD.amount, OLD.fee,
           OLD.created_at) THEN
        RAISE EXCEPTION 'LEDGER_GUARD: only the status, txid and updated_at of a withdrawal change'
              USING ERRCODE = 'integrity_constraint_violation';
    ELSIF NEW.status IS DISTINCT FROM OLD.status AND (OLD.status, NEW.status) NOT IN (
            ('pending', 'approved'), ('pending', 'rejected'), ('pending', 'cancelled'),
            ('approved', 'rejected'), ('approved', 'sent')) THEN
        v_illegal := format('withdrawal %s is %s: cannot become %s', OLD.id, OLD.status, NEW.status);
    ELSIF OLD.txid IS NOT NULL AND NEW.txid IS DISTINCT FROM OLD.txid THEN
        v_illegal := format('withdrawal %s was sent as %s: not again as %s', OLD.id, OLD.txid,
                            NEW.txid);
    END IF;
    IF v_illegal IS NOT NULL THEN
        RAISE EXCEPTION '%', v_illegal USING ERRCODE = 'EX001', HINT = 'ILLEGAL_WITHDRAWAL_TRANSITION';
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER withdrawals_state_machine BEFORE INSERT OR UPDATE ON wallets.withdrawals
    FOR EACH ROW EXECUTE FUNCTION wallets.check_withdrawal_transition();
