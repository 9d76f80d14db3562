"""PostgreSQL through the project's pool and migration runner."""
import uuid

import pytest

from services.common import green
from services.common.migrations import MigrationError, Migration, apply_sql_migrations
from services.common.postgres import Database, make_pool


@pytest.fixture(scope="module")
def db(test_settings):
    pool = make_pool(test_settings, max_size=4)
    yield Database(pool)
    pool.close()


@pytest.fixture
def table(db):
    name = f"stack_tx_{uuid.uuid4().hex[:10]}"
    with db.transaction() as conn:
        conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, note text)")
    yield name
    with db.transaction() as conn:
        conn.execute(f"DROP TABLE {name}")


def test_psycopg_waits_cooperatively():
    assert green.installed()


def test_committed_transaction_is_visible(db, table):
    with db.transaction() as conn:
        conn.execute(f"INSERT INTO {table} VALUES (1, 'kept')")
    with db.transaction() as conn:
        assert conn.execute(f"SELECT note FROM {table}").fetchall() == [("kept",)]


def test_failed_transaction_leaves_nothing(db, table):
    with pytest.raises(RuntimeError):
        with db.transaction() as conn:
            conn.execute(f"INSERT INTO {table} VALUES (1, 'lost')")
            raise RuntimeError("boom")
    with db.transaction() as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def test_migration_runner_applies_each_file_once(db):
    component = f"stacktest_{uuid.uuid4().hex[:8]}"
    table = f"{component}_things"
    migrations = [
        Migration(component, 1, "create", f"CREATE TABLE {table} (id int PRIMARY KEY)"),
        Migration(component, 2, "seed", f"INSERT INTO {table} VALUES (1), (2)"),
    ]
    try:
        with db.pool.connection() as conn:
            first = apply_sql_migrations(conn, migrations)
            second = apply_sql_migrations(conn, migrations)
            rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            recorded = conn.execute(
                "SELECT version FROM schema_migrations WHERE component = %s ORDER BY version",
                (component,)).fetchall()
        assert [m.version for m in first] == [1, 2]
        assert second == []
        assert rows == 2
        assert recorded == [(1,), (2,)]

        edited = [migrations[0], Migration(component, 2, "seed", f"INSERT INTO {table} VALUES (3)")]
        with db.pool.connection() as conn, pytest.raises(MigrationError):
            apply_sql_migrations(conn, edited)
    finally:
        with db.transaction() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute("DELETE FROM schema_migrations WHERE component = %s", (component,))


def test_failed_migration_is_not_recorded(db):
    component = f"stacktest_{uuid.uuid4().hex[:8]}"
    bad = [Migration(component, 1, "broken", "CREATE TABLE (")]
    with db.pool.connection() as conn:
        with pytest.raises(Exception):
            apply_sql_migrations(conn, bad)
        count = conn.execute("SELECT count(*) FROM schema_migrations WHERE component = %s",
                             (component,)).fetchone()[0]
    assert count == 0
