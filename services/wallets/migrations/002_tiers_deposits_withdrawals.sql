-- ran as sha256:3c53fbc6e3123210e3d3616205e779bb9cfad32837303c65a51785371551b166
-- Wallets: fee tiers, deposit addresses, withdrawals and their state machine.

-- A user's fee tier (services/wallets/assets.py FEE_TIERS); no row: the
-- market's own schedule.
CREATE TABLE wallets.fee_tiers (
    user_id    text        PRIMARY KEY,
    tier       text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One deposit address per (user, asset); an address belongs to one user.
CREATE TABLE wallets.deposit_addresses (
    asset      text        NOT NULL,
    address    text        NOT NULL,
    user_id    text        NOT NULL,
    account_id bigint      NOT NULL REFERENCES wallets.accounts (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset, address),
    CONSTRAINT deposit_addresses_one_per_user_asset UNIQUE (user_id, asset)
);

-- ---------------------------------------------------------------- withdrawals
-- pending --approve--> approved --mark_sent--> sent
--    |                    |
--    +--reject--> rejected <--reject--+
--    +--cancel--> cancelled
-- The money moves in journal transactions (hold on request, release on reject
-- or cancel, withdrawal + fee on sent); every step is one row of
-- withdrawal_transitions.
CREATE TABLE wallets.withdrawals (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_key text          NOT NULL,
    user_id     text          NOT NULL,
    asset       text          NOT NULL,
    account_id  bigint        NOT NULL REFERENCES wallets.accounts (id),
    address     text          NOT NULL,
    amount      numeric(78,0) NOT NULL,
    fee         numeric(78,0) NOT NULL,
    status      text          NOT NULL DEFAULT 'pending',
    txid        text,
    created_at  timestamptz   NOT NULL DEFAULT now(),
    updated_at  timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT withdrawals_request_key_unique UNIQUE (request_key),
    CONSTRAINT withdrawals_amount_positive CHECK (amount > 0),
    CONSTRAINT withdrawals_fee_nonnegative CHECK (fee >= 0),
    CONSTRAINT withdrawals_status_valid
        CHECK (status IN ('pending', 'approved', 'rejected', 'cancelled', 'sent')),
    CONSTRAINT withdrawals_txid_iff_sent CHECK ((status = 'sent') = (txid IS NOT NULL))
);

-- The daily limit sums a user's recent withdrawals of one asset.
CREATE INDEX withdrawals_user_asset_recent ON wallets.withdrawals (user_id, asset, created_at);

CREATE TABLE wallets.withdrawal_transitions (
    withdrawal_id  bigint      NOT NULL REFERENCES wallets.withdrawals (id),
    from_status    text,
    to_status      text        NOT NULL,
    actor          text        NOT NULL,
    reason         text,
    transaction_id bigint      REFERENCES wallets.transactions (id),
    at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (withdrawal_id, to_status)
);

-- The state machine and the append-only history are enforced by triggers:
-- functions/check_withdrawal_transition.sql and functions/refuse.sql.
