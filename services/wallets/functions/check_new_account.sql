-- An account's identity (owner, kind, asset) is checked once, when the
-- account is created, instead of by CHECK constraints re-evaluated on every
-- balance update; accounts_keep_identity (refuse.sql) refuses any later change
-- of those columns, so checking at insert is equivalent. A refusal names the
-- rule it breaks as a constraint (check_violation), like a CHECK would.
CREATE OR REPLACE FUNCTION wallets.check_new_account() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_rule text;
    v_problem text;
BEGIN
    SELECT rule, problem INTO v_rule, v_problem FROM (VALUES
        (1, 'accounts_kind_valid', format('unknown account kind %s', NEW.kind),
         NEW.kind NOT IN ('user', 'fee_revenue', 'deposits_clearing', 'withdrawals_clearing')),
        (2, 'accounts_system_owner', format('owner %s does not match kind %s', NEW.owner, NEW.kind),
         (NEW.kind = 'user') <> (NEW.owner NOT LIKE 'system:%')
         OR (NEW.kind <> 'user' AND NEW.owner <> 'system:' || NEW.kind)),
        (3, 'accounts_asset_code', format('%s is not an asset code', NEW.asset),
         NEW.asset !~ '^[A-Z0-9]{2,12}$')
    ) AS rules (position, rule, problem, broken)
     WHERE broken ORDER BY position LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'LEDGER_GUARD: %', v_problem
              USING ERRCODE = 'check_violation', CONSTRAINT = v_rule;
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER accounts_identity_valid BEFORE INSERT ON wallets.accounts
    FOR EACH ROW EXECUTE FUNCTION wallets.check_new_account();
