-- ran as sha256:d5953a71fbb9e0b5abb3e84a817acf1c88f738aae67af07c03bf69cf84602ac1
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
-- The trigger that moves balances by the postings (functions/apply_postings.sql)
-- and the ledger's guards (functions/refuse.sql) are function files, applied
-- after these migrations and again whenever they change.
