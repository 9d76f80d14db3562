-- The orders role (stack/prepare.py) works on the tables of its own schema
-- only; it owns nothing (the migrations' owner does), so it cannot change
-- the schema. The same for tables made later in the schema.
GRANT USAGE ON SCHEMA orders TO orders;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA orders TO orders;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA orders TO orders;
ALTER DEFAULT PRIVILEGES IN SCHEMA orders GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO orders;
ALTER DEFAULT PRIVILEGES IN SCHEMA orders GRANT USAGE, SELECT ON SEQUENCES TO orders;
