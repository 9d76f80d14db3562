"""The PostgreSQL migration runner against the real test database: function
files re-applied when (and only when) they change, everything of a run in one
transaction, and migrations rewritten after they ran accepted only when they
name the checksum they ran as."""
import uuid

import psycopg
import pytest

from services.common.migrations import Migration, MigrationError, apply_sql_migrations


@pytest.fixture
def scratch(test_settings):
    """A component name and a schema of the same name, removed afterwards."""
    component = f"runner_{uuid.uuid4().hex[:8]}"
    conn = psycopg.connect(test_settings.postgres_dsn())
    yield conn, component
    conn.rollback()
    with conn.transaction():
        conn.execute(f"DROP SCHEMA IF EXISTS {component} CASCADE")
        conn.execute("DELETE FROM schema_migrations WHERE component = %s", (component,))
        conn.execute("DELETE FROM schema_functions WHERE component = %s", (component,))
    conn.close()


def answer_function(component, answer):
    return Migration(component, None, "answer", (
        f"CREATE OR REPLACE FUNCTION {component}.answer() RETURNS int "
        f"LANGUAGE sql IMMUTABLE AS $$ SELECT {answer} $$"))


def test_a_function_file_is_applied_again_only_when_it_changes(scratch):
    conn, component = scratch
    schema = Migration(component, 1, "schema", f"CREATE SCHEMA {component}")
    first = apply_sql_migrations(conn, [schema, answer_function(component, 41)])
    unchanged = apply_sql_migrations(conn, [schema, answer_function(component, 41)])
    changed = apply_sql_migrations(conn, [schema, answer_function(component, 42)])

    assert [m.label for m in first] == [f"{component}/001_schema", f"{component}/functions/answer"]
    assert unchanged == []
    assert [m.label for m in changed] == [f"{component}/functions/answer"]
    assert conn.execute(f"SELECT {component}.answer()").fetchone() == (42,)
    recorded = conn.execute("SELECT checksum FROM schema_functions WHERE component = %s",
                            (component,)).fetchall()
    assert recorded == [(answer_function(component, 42).checksum,)]


def test_a_run_that_fails_leaves_nothing_behind(scratch):
    """The migrations of a run and its function files commit together: a
    broken function file undoes the migration applied before it."""
    conn, component = scratch
    schema = Migration(component, 1, "schema", f"CREATE SCHEMA {component}")
    broken = Migration(component, None, "broken", "CREATE OR REPLACE FUNCTION (")
    with pytest.raises(psycopg.errors.SyntaxError):
        apply_sql_migrations(conn, [schema, broken])
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s",
                        (component,)).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM schema_migrations WHERE component = %s",
                        (component,)).fetchone() == (0,)


def test_a_migration_rewritten_after_it_ran_must_name_its_old_checksum(scratch):
    conn, component = scratch
    original = Migration(component, 1, "schema",
                         f"CREATE SCHEMA {component};\nCREATE FUNCTION {component}.f() "
                         "RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;")
    apply_sql_migrations(conn, [original])

    silently_edited = Migration(component, 1, "schema", f"CREATE SCHEMA {component};")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        apply_sql_migrations(conn, [silently_edited])
    conn.rollback()

    rewritten = Migration(component, 1, "schema",
                          f"-- ran as sha256:{original.checksum}\nCREATE SCHEMA {component};")
    assert apply_sql_migrations(conn, [rewritten]) == []
    # The record keeps the checksum it ran as: a checkout of the code before
    # the rewrite still runs against this database.
    assert conn.execute("SELECT checksum FROM schema_migrations WHERE component = %s",
                        (component,)).fetchone() == (original.checksum,)
