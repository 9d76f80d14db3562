-- The matching role (stack/prepare.py) works on the tables of its own schema
-- only; it owns nothing (the migrations' owner does), so it cannot change
-- the schema. The same for tables made later in the schema.
GRANT USAGE ON SCHEMA matching TO matching;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA matching TO matching;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA matching TO matching;
ALTER DEFAULT PRIVILEGES IN SCHEMA matching GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO matching;
ALTER DEFAULT PRIVILEGES IN SCHEMA matching GRANT USAGE, SELECT ON SEQUENCES TO matching;
