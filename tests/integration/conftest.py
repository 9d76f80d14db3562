import psycopg
import pytest

from services.common.migrations import apply_sql_migrations, service_sql_migrations


@pytest.fixture(scope="session", autouse=True)
def test_database_migrated(test_settings):
    """Every service's migrations, applied to the test database (idempotent)."""
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        apply_sql_migrations(conn, service_sql_migrations())
