-- Orders' and matching's tables live in their own schemas (orders 007,
-- matching 003), as users', wallets' and the registry's do. Each service's
-- role names its own schema in its search_path (stack/prepare.py); this is
-- the database's default for every other session (migrations, tests, tools),
-- so unqualified names keep working there. SET LOCAL: the rest of this run
-- (one transaction) sees it too.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET search_path = "$user", public, orders, matching',
                   current_database());
END $$;
SET LOCAL search_path = "$user", public, orders, matching;
