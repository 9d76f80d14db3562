-- The wallets role (stack/prepare.py) works on the tables of its own schema
-- only; it owns nothing (the migrations' owner does), so it cannot change
-- the schema. The ledger's guards (functions/refuse.sql) still refuse what
-- must never happen, whoever tries.
GRANT USAGE ON SCHEMA wallets TO wallets;
-- Orders calls the functions wallets declares for it (hold_funds,
-- release_funds, lock_user_accounts: each file grants EXECUTE); none of the
-- tables is granted to it.
GRANT USAGE ON SCHEMA wallets TO orders;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA wallets TO wallets;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA wallets TO wallets;
ALTER DEFAULT PRIVILEGES IN SCHEMA wallets GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO wallets;
ALTER DEFAULT PRIVILEGES IN SCHEMA wallets GRANT USAGE, SELECT ON SEQUENCES TO wallets;
