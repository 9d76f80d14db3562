"""Fixtures of the matching integration tests that drive hosts directly."""
import pytest

from services.common.postgres import make_pool


@pytest.fixture(scope="module")
def pool(test_settings):
    """A connection pool on the test database, as a matching process has."""
    pool = make_pool(test_settings, max_size=4)
    yield pool
    pool.close()
