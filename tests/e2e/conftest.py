"""Fixtures shared by the e2e tests."""
import pytest

from tests.e2e.memcached_kit import kill_memcached, start_memcached


@pytest.fixture
def memcached_killed(settings):
    kill_memcached(settings)
    yield
    start_memcached(settings)
