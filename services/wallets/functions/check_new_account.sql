-- An account's identity (owner, kind, asset) is checked once, when the
-- account is created, instead of by CHECK constraints re-evaluated on every
-- balance update; accounts_keep_identity (refuse.sql) refuses any later change
-- of those columns, so checking at insert is equivalent.
CREATE OR REPLACE FUNCTION wallets.check_new_account() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind NOT IN ('user', 'fee_revenue', 'deposits_clearing', 'withdrawals_clearing') THEN
        RAISE EXCEPTION 'LEDGER_GUARD: unknown account kind %', NEW.kind
              USING ERRCODE = 'check_violation', CONSTRAINT = 'accounts_kind_valid';
    END IF;
    IF (NEW.kind = 'user') <> (NEW.owner NOT LIKE 'system:%')
       OR (NEW.kind <> 'user' AND NEW.owner <> 'system:' || NEW.kind) THEN
        RAISE EXCEPTION 'LEDGER_GUARD: owner % does not match kind %', NEW.owner, NEW.kind
              USING ERRCODE = 'check_violation', CONSTRAINT = 'accounts_system_owner';
    END IF;
    IF NEW.asset !~ '^[A-Z0-9]{2,12}$' THEN
        RAISE EXCEPTION 'LEDGER_GUARD: % is not an asset code', NEW.asset
              USING ERRCODE = 'check_violation', CONSTRAINT = 'accounts_asset_code';
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER accounts_identity_valid BEFORE INSERT ON wallets.accounts
    FOR EACH ROW EXECUTE FUNCTION wallets.check_new_account();
