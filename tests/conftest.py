"""Shared fixtures. Tests run under eventlet, as the services do: the patch
must come before anything imports socket, threading or select."""
import eventlet

eventlet.monkey_patch()

import logging  # noqa: E402
import uuid  # noqa: E402

import pytest  # noqa: E402

from services.common.config import DEFAULT_TEST_SUFFIX, load_settings  # noqa: E402


def pytest_unconfigure(config):
    """Flush and close the log handlers now, and forget them: otherwise a
    handler collected while the interpreter tears down (its modules already
    cleared) calls logging's lock through the monkey-patched threading and
    prints "Exception ignored in _removeHandlerRef ... TypeError" after every
    run, which reads like a failure. An empty handler list is what
    logging's own clean-up checks for before it takes the lock."""
    logging.shutdown()
    logging._handlerList.clear()


@pytest.fixture(scope="session")
def settings():
    """The demo stack's settings (what `make up` started)."""
    return load_settings()


@pytest.fixture(scope="session")
def test_settings(settings):
    """Same servers, but the test namespaces: database, vhost and keyspace
    with the test suffix (_test, or EXCHANGE_TEST_SUFFIX's: Settings.test_suffix),
    created by `make up`'s provisioning."""
    suffix = settings.test_suffix
    return settings.with_overrides(
        EXCHANGE_POSTGRES_DB=settings["EXCHANGE_POSTGRES_DB"] + suffix,
        EXCHANGE_RABBITMQ_VHOST=settings["EXCHANGE_RABBITMQ_VHOST"] + suffix,
        EXCHANGE_CASSANDRA_KEYSPACE=settings["EXCHANGE_CASSANDRA_KEYSPACE"] + suffix,
    )


@pytest.fixture(scope="session")
def test_run_dir(settings):
    """Where a test run keeps its own files (the crash tests' process
    directories: configs, logs, pid files): run/ for the default namespace,
    run/tests<suffix>/ for one of EXCHANGE_TEST_SUFFIX's, so that runs in
    namespaces of their own never share a pid file (a process started from
    a pid file may stop the one it names)."""
    if settings.test_suffix == DEFAULT_TEST_SUFFIX:
        return settings.run_dir
    return settings.run_dir / f"tests{settings.test_suffix}"


@pytest.fixture
def nameko_config(test_settings):
    """Config for service containers started in-process by a test."""
    config = test_settings.nameko_config()
    config.update({
        "POSTGRES_DB": test_settings["EXCHANGE_POSTGRES_DB"],
        "CASSANDRA_KEYSPACE": test_settings["EXCHANGE_CASSANDRA_KEYSPACE"],
        "CACHE_PREFIX": f"test:{uuid.uuid4().hex[:8]}:",
        # The matching tests' own markets (made-up users, no holds: their
        # trades must not reach the vhost's settlement) are hosted only by
        # the matching tests' engines (tests/integration/matching).
        "MATCHING_MARKETS": "(?!TM).*",
    })
    return config
