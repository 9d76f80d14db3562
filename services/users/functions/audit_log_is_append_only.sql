-- The security audit log is append-only: updates and deletes are refused.
CREATE OR REPLACE FUNCTION users.audit_log_is_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'users.audit_log is append-only';
END $$;
CREATE OR REPLACE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON users.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION users.audit_log_is_append_only();
