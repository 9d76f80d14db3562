-- Wallets: the double-entry ledger.
--
-- Amounts are integers in the asset's minor units (10^-scale, scale from
-- services/wallets/assets.py) stored as NUMERIC(78,0): exact, and wide enough
-- for any uint256 token amount. BIGINT is not: ETH has 18 decimals, so its
-- 2^63 - 1 minor units are only ~9.22 ETH.
--
-- The rules the database itself enforces:
--   * balances change only through postings: an AFTER INSERT statement
--     trigger on postings applies them to the accounts; a direct UPDATE of a
--     balance, or an account created with a balance, is refused;
--   * the postings of one statement sum to zero per (transaction, asset), so
--     every journal transaction balances (a single non-zero posting cannot),
--     and name existing transactions and accounts of their asset;
--   * available and locked are never negative (deposits clearing, the outside
--     world, is the one account that is never positive);
--   * journal transactions and postings are append-only.

CREATE SCHEMA IF NOT EXISTS wallets;

-- ---------------------------------------------------------------- accounts
-- One per (owner, asset). Users own 'user' accounts; the system owns one
-- account of each other kind per asset, with owner 'system:<kind>'.
CREATE TABLE wallets.accounts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner      text          NOT NULL,
    kind       text          NOT NULL,
    asset      text          NOT NULL,
    available  numeric(78,0) NOT NULL DEFAULT 0,
    locked     numeric(78,0) NOT NULL DEFAULT 0,
    created_at timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT accounts_owner_asset_unique UNIQUE (owner, asset),
    CONSTRAINT accounts_kind_valid
        CHECK (kind IN ('user', 'fee_revenue', 'deposits_clearing', 'withdrawals_clearing')),
    CONSTRAINT accounts_system_owner
        CHECK ((kind = 'user') = (owner NOT LIKE 'system:%') AND (kind = 'user' OR owner = 'system:' || kind)),
    CONSTRAINT accounts_asset_code CHECK (asset ~ '^[A-Z0-9]{2,12}$'),
    CONSTRAINT accounts_available_nonnegative CHECK (kind = 'deposits_clearing' OR available >= 0),
    CONSTRAINT accounts_locked_nonnegative CHECK (locked >= 0),
    CONSTRAINT accounts_deposits_clearing_nonpositive CHECK (kind <> 'deposits_clearing' OR available <= 0),
    CONSTRAINT accounts_system_nothing_locked CHECK (kind = 'user' OR locked = 0)
) WITH (fillfactor = 70);  -- room for HOT updates: balances change all the time

-- ---------------------------------------------------------------- journal
CREATE TABLE wallets.transactions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key text        NOT NULL,
    type            text        NOT NULL,
    details         jsonb       NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT transactions_idempotency_key_unique UNIQUE (idempotency_key),
    CONSTRAINT transactions_type_valid
        CHECK (type IN ('deposit', 'withdrawal', 'hold', 'release', 'trade', 'fee', 'adjustment'))
);

-- One row per (account, transaction, bucket): the core merges postings to the
-- same place before writing. The primary key doubles as the account's
-- history index (ledger pages, newest first).
--
-- transaction_id and account_id are references, checked by apply_postings
-- once per statement instead of by FOREIGN KEY constraints: a foreign key
-- costs one row-level trigger per posting and per reference, which was half
-- the time of settling a batch. Neither side can disappear later: accounts
-- and transactions are never deleted (guards below).
CREATE TABLE wallets.postings (
    account_id     bigint        NOT NULL,
    transaction_id bigint        NOT NULL,
    bucket         text          NOT NULL,
    asset          text          NOT NULL,
    amount         numeric(78,0) NOT NULL,
    PRIMARY KEY (account_id, transaction_id, bucket),
    CONSTRAINT postings_bucket_valid CHECK (bucket IN ('available', 'locked')),
    CONSTRAINT postings_amount_nonzero CHECK (amount <> 0)
);

-- ---------------------------------------------------------------- postings move balances

-- One statement per inserting statement (not per row): move the balances by
-- the new postings, then refuse the whole statement if a transaction does not
-- balance, names a missing transaction, or a posting a missing account or
-- another asset than its account's. The CHECK constraints of accounts refuse
-- a balance below zero during the UPDATE.
CREATE FUNCTION wallets.apply_postings() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    unbalanced text;
    unknown_transaction bigint;
    expected bigint;
    updated bigint;
BEGIN
    WITH deltas AS (
        SELECT account_id, asset,
               coalesce(sum(amount) FILTER (WHERE bucket = 'available'), 0) AS available,
               coalesce(sum(amount) FILTER (WHERE bucket = 'locked'), 0) AS locked
          FROM new_postings
         GROUP BY account_id, asset
    ), moved AS (
        UPDATE wallets.accounts a
           SET available = a.available + d.available,
               locked = a.locked + d.locked
          FROM deltas d
         WHERE a.id = d.account_id AND a.asset = d.asset
        RETURNING 1
    )
    SELECT (SELECT format('transaction %s does not balance in %s (sum %s)',
                          transaction_id, asset, sum(amount))
              FROM new_postings
             GROUP BY transaction_id, asset
            HAVING sum(amount) <> 0
             LIMIT 1),
           (SELECT n.transaction_id
              FROM (SELECT DISTINCT transaction_id FROM new_postings) n
             WHERE NOT EXISTS (SELECT 1 FROM wallets.transactions t WHERE t.id = n.transaction_id)
             LIMIT 1),
           (SELECT count(*) FROM deltas),
           (SELECT count(*) FROM moved)
      INTO unbalanced, unknown_transaction, expected, updated;

    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'UNBALANCED_TRANSACTION: %', unbalanced
              USING ERRCODE = 'check_violation', CONSTRAINT = 'postings_balance_per_asset';
    END IF;
    IF unknown_transaction IS NOT NULL THEN
        RAISE EXCEPTION 'UNKNOWN_TRANSACTION: postings name transaction %, which does not exist',
              unknown_transaction
              USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'postings_transaction_exists';
    END IF;
    IF updated <> expected THEN
        RAISE EXCEPTION 'POSTING_ACCOUNT_MISMATCH: a posting names a missing account or another asset than its account''s'
              USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'postings_account_exists';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER postings_apply AFTER INSERT ON wallets.postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION wallets.apply_postings();

-- ---------------------------------------------------------------- guards

CREATE FUNCTION wallets.refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

-- Only apply_postings (trigger depth 1) may move a balance.
CREATE TRIGGER accounts_balances_via_postings BEFORE UPDATE ON wallets.accounts
    FOR EACH ROW
    WHEN (pg_trigger_depth() = 0
          AND (OLD.available <> NEW.available OR OLD.locked <> NEW.locked))
    EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: balances change only through postings');

CREATE TRIGGER accounts_start_empty BEFORE INSERT ON wallets.accounts
    FOR EACH ROW
    WHEN (NEW.available <> 0 OR NEW.locked <> 0)
    EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: an account starts with zero balances');

CREATE TRIGGER accounts_keep_identity BEFORE UPDATE ON wallets.accounts
    FOR EACH ROW
    WHEN (OLD.owner <> NEW.owner OR OLD.kind <> NEW.kind OR OLD.asset <> NEW.asset OR OLD.id <> NEW.id)
    EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: an account never changes owner, kind or asset');

CREATE TRIGGER accounts_never_deleted BEFORE DELETE ON wallets.accounts
    FOR EACH ROW EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: accounts are never deleted');

CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON wallets.transactions
    FOR EACH ROW EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: the journal is append-only');

CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON wallets.postings
    FOR EACH ROW EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: the journal is append-only');

CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON wallets.accounts
    FOR EACH STATEMENT EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: the ledger is never truncated');

CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON wallets.transactions
    FOR EACH STATEMENT EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: the ledger is never truncated');

CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON wallets.postings
    FOR EACH STATEMENT EXECUTE FUNCTION wallets.refuse('LEDGER_GUARD: the ledger is never truncated');
