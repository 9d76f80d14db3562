-- ran as sha256:265cdbe90e5188f5f3c711f74c7447782e5a4746f91d417dfe9c5ce922d8533f
-- The users service's tables, in their own schema. Identity itself (password,
-- OTP, roles) lives in Keycloak; here: the local profile and account state,
-- the sign-up saga's progress, partner API keys and the security audit log.
CREATE SCHEMA IF NOT EXISTS users;

-- One row per Keycloak user that completed (or is completing) sign-up.
-- user_id is the Keycloak subject (the access token's "sub").
CREATE TABLE users.profiles (
    user_id          uuid        PRIMARY KEY,
    username         text        NOT NULL UNIQUE,
    email            text        NOT NULL,
    state            text        NOT NULL DEFAULT 'active'
                                 CHECK (state IN ('active', 'frozen', 'closed')),
    state_reason     text,
    state_changed_at timestamptz,
    state_changed_by text,
    signup_id        uuid        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- The sign-up saga (services/users/signup.py): one row per attempt, written
-- before each step. "reached" is the furthest forward state, kept while
-- compensating. A worker owns a row until lease_until; recovery takes over
-- rows whose lease expired. No password is ever stored.
CREATE TABLE users.signups (
    signup_id       uuid        PRIMARY KEY,
    username        text        NOT NULL,
    email           text        NOT NULL,
    state           text        NOT NULL CHECK (state IN (
                        'pending', 'identity_created', 'role_granted', 'profile_created',
                        'wallets_opened', 'completed', 'rejected', 'compensating', 'rolled_back')),
    reached         text        NOT NULL,
    user_id         uuid,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error_code text,
    last_error      text,
    lease_until     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- At most one sign-up in flight per username and per e-mail: two concurrent
-- attempts cannot race each other through Keycloak, and the recovery of a
-- crashed attempt can recognise its own orphan Keycloak user.
CREATE UNIQUE INDEX signups_username_in_flight ON users.signups (username)
    WHERE state NOT IN ('completed', 'rejected', 'rolled_back');
CREATE UNIQUE INDEX signups_email_in_flight ON users.signups (email)
    WHERE state NOT IN ('completed', 'rejected', 'rolled_back');
CREATE INDEX signups_unfinished ON users.signups (lease_until)
    WHERE state NOT IN ('completed', 'rejected', 'rolled_back');

-- Partner API keys. api_key is the public identifier (X-MBX-APIKEY). The
-- secret is stored only encrypted (AES-256-GCM, server-side keyring, see
-- services/users/secretbox.py) and is wiped when the key is revoked.
CREATE TABLE users.api_keys (
    key_id            uuid        PRIMARY KEY,
    api_key           text        NOT NULL UNIQUE CHECK (api_key ~ '^[A-Za-z0-9]{64}$'),
    user_id           uuid        NOT NULL REFERENCES users.profiles (user_id),
    label             text        NOT NULL,
    permissions       text[]      NOT NULL
                                  CHECK (permissions <@ ARRAY['read', 'trade', 'withdraw']
                                         AND 'read' = ANY (permissions)),
    ip_allowlist      cidr[],
    secret_key_id     text,
    secret_ciphertext bytea,
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz,
    revoked_at        timestamptz,
    revoked_by        text,
    CHECK ((revoked_at IS NULL) = (secret_ciphertext IS NOT NULL AND secret_key_id IS NOT NULL)),
    CHECK (NOT ('withdraw' = ANY (permissions)) OR cardinality(ip_allowlist) > 0)
);
CREATE INDEX api_keys_user ON users.api_keys (user_id, created_at);

-- Security audit log: append-only (updates and deletes are refused).
CREATE TABLE users.audit_log (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    action    text        NOT NULL,
    user_id   uuid,
    actor     text        NOT NULL,
    client_ip inet,
    details   jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_user ON users.audit_log (user_id, id);
CREATE INDEX audit_log_action ON users.audit_log (action, id);
-- Append-only: functions/audit_log_is_append_only.sql.
