-- The services' own PostgreSQL roles (created by stack/prepare.py, each named
-- after its service) share the outbox: each writes its messages, and each
-- service's relay reads and deletes its own stream's.
GRANT SELECT, INSERT, DELETE ON public.outbox TO matching, orders, registry, users, wallets;
GRANT USAGE ON SEQUENCE public.outbox_id_seq TO matching, orders, registry, users, wallets;
-- Every service and the gateway read the registry's catalogue through its
-- declared functions (registry 003 grants them).
