-- The registry role (stack/prepare.py) lists and changes assets and markets;
-- its journal (registry.changes) takes inserts only. Every other service and
-- the gateway may only call the declared catalogue functions (their files
-- grant EXECUTE), so they get USAGE on the schema and no table.
GRANT USAGE ON SCHEMA registry TO registry, marketdata, matching, orders, users, wallets, gateway;
GRANT SELECT, INSERT ON registry.changes TO registry;
GRANT SELECT, INSERT, UPDATE ON registry.assets, registry.markets TO registry;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA registry TO registry;
