-- The users role (stack/prepare.py) works on the tables of its own schema
-- only; it owns nothing (the migrations' owner does), so it cannot change
-- the schema. The audit log takes inserts only.
GRANT USAGE ON SCHEMA users TO users;
GRANT SELECT, INSERT, UPDATE, DELETE ON users.profiles, users.signups, users.api_keys TO users;
GRANT SELECT, INSERT ON users.audit_log TO users;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA users TO users;
