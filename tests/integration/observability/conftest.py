"""Fixtures of the observability tests (helpers: obs_helpers.py)."""
import pytest

from obs_helpers import Alertmanager, Prometheus


@pytest.fixture(scope="session")
def prometheus(settings):
    return Prometheus(f"http://{settings.host}:{settings['EXCHANGE_PROMETHEUS_PORT']}")


@pytest.fixture(scope="session")
def alertmanager(settings):
    return Alertmanager(f"http://{settings.host}:{settings['EXCHANGE_ALERTMANAGER_PORT']}")


@pytest.fixture
def stack_rpc(settings):
    """RPC into the running stack's services (main vhost)."""
    from nameko.standalone.rpc import ClusterRpcProxy
    with ClusterRpcProxy(settings.nameko_config(), timeout=30) as rpc:
        yield rpc

