-- wallets.refuse: the ledger's guards. Each trigger below refuses a change
-- that must never happen, with the message it names.
CREATE OR REPLACE FUNCTION wallets.refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

-- Only apply_postings (trigger depth 1) may move a balance.
CREATE OR REPLACE TRIGGER accounts_balances_via_postings BEFORE UPDATE ON wallets.accounts
    FOR EACH ROW
    WHEN (pg_trigger_depth() = 0
          AND (OLD.available <> NEW.available OR OLD.locked <> NEW.locked))
    EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: balances change only through postings');

CREATE OR REPLACE TRIGGER accounts_start_empty BEFORE INSERT ON wallets.accounts
    FOR EACH ROW
    WHEN (NEW.available <> 0 OR NEW.locked <> 0)
    EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: an account starts with zero balances');

CREATE OR REPLACE TRIGGER accounts_keep_identity BEFORE UPDATE ON wallets.accounts
    FOR EACH ROW
    WHEN (OLD.owner <> NEW.owner OR OLD.kind <> NEW.kind OR OLD.asset <> NEW.asset OR OLD.id <> NEW.id)
    EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: an account never changes owner, kind or asset');

CREATE OR REPLACE TRIGGER accounts_never_deleted BEFORE DELETE ON wallets.accounts
    FOR EACH ROW EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: accounts are never deleted');

CREATE OR REPLACE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON wallets.transactions
    FOR EACH ROW EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: the journal is append-only');

CREATE OR REPLACE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON wallets.postings
    FOR EACH ROW EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: the journal is append-only');

CREATE OR REPLACE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON wallets.accounts
    FOR EACH STATEMENT EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: the ledger is never truncated');

CREATE OR REPLACE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON wallets.transactions
    FOR EACH STATEMENT EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: the ledger is never truncated');

CREATE OR REPLACE TRIGGER postings_no_truncate BEFORE TRUNCATE ON wallets.postings
    FOR EACH STATEMENT EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: the ledger is never truncated');

CREATE OR REPLACE TRIGGER withdrawals_never_deleted BEFORE DELETE ON wallets.withdrawals
    FOR EACH ROW EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: withdrawals are never deleted');

CREATE OR REPLACE TRIGGER withdrawal_transitions_append_only BEFORE UPDATE OR DELETE ON wallets.withdrawal_transitions
    FOR EACH ROW EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: withdrawal history is append-only');
