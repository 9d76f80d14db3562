import psycopg
import pytest

from services.common import catalogue
from services.common.config import load_settings
from services.common.migrations import apply_sql_migrations, service_sql_migrations


def _migrate_and_load(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        apply_sql_migrations(conn, service_sql_migrations())
    # What services load at start, for tests that use their cores directly.
    catalogue.load_from_dsn(dsn)


# At import: test modules look assets up at module level, during collection.
_settings = load_settings()
_migrate_and_load(_settings.postgres_dsn(_settings["EXCHANGE_POSTGRES_DB"] + _settings.test_suffix))


@pytest.fixture(scope="session", autouse=True)
def test_database_migrated(test_settings):
    """Every service's migrations, applied to the test database (idempotent),
    and the registry's catalogue loaded in this process."""
    _migrate_and_load(test_settings.postgres_dsn())
