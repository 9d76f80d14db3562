-- ran as sha256:77fe49ac13f6e96ed1dd7604543fac19bc78689a3e1ddf3f7631317a562466a2
-- Cheaper balance updates, same guarantees.
--
-- 1. An account's identity (owner, kind, asset) is checked once, when the
--    account is created, instead of by CHECK constraints that PostgreSQL
--    re-evaluates (a regular expression among them) on every balance update.
--    accounts_keep_identity already refuses any change of those columns, so
--    checking at insert is equivalent.
-- 2. apply_postings reads the new postings twice instead of three times: the
--    per-(transaction, asset) sums serve both the balance check and the
--    existence check of the transactions.

ALTER TABLE wallets.accounts
    DROP CONSTRAINT accounts_kind_valid,
    DROP CONSTRAINT accounts_system_owner,
    DROP CONSTRAINT accounts_asset_code;

-- The functions: functions/check_new_account.sql, functions/apply_postings.sql.
