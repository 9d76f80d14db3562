-- registry.changes is append-only: every listing and change, in order.
CREATE OR REPLACE FUNCTION registry.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'REGISTRY_JOURNAL_APPEND_ONLY: registry.changes is append-only';
END $$;
CREATE OR REPLACE TRIGGER changes_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON registry.changes
    FOR EACH STATEMENT EXECUTE FUNCTION registry.refuse_change();
