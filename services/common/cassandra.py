"""Cassandra access for services: one driver session per service process.

Under eventlet the driver must use its eventlet connection class (the default
libev/asyncore reactors run their own OS thread and block the hub); the
cooperation test proves it.
"""
from __future__ import annotations

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from nameko.extensions import DependencyProvider

from services.common.config import Settings, load_settings


def _connection_class():
    import eventlet.patcher
    if eventlet.patcher.is_monkey_patched("socket"):
        from cassandra.io.eventletreactor import EventletConnection
        return EventletConnection
    return None


def make_cluster(settings: Settings) -> Cluster:
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        consistency_level=ConsistencyLevel.name_to_value[settings["EXCHANGE_CASSANDRA_CONSISTENCY"]],
        request_timeout=10)
    kwargs = {"protocol_version": 5}
    connection_class = _connection_class()
    if connection_class is not None:
        kwargs["connection_class"] = connection_class
        # The eventlet reactor corrupts protocol v5's checksummed frames on large
        # reads ("CRC mismatch on header", seen with a 2 MB partition); v4 has no
        # such framing. The reactor is deprecated in driver 3.30 (removed in
        # 3.31), hence the pin in requirements.txt.
        kwargs["protocol_version"] = 4
    return Cluster([settings.server_host("cassandra")], port=settings.int("EXCHANGE_CASSANDRA_PORT"),
                   execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                   connect_timeout=5, **kwargs)


class CassandraSession(DependencyProvider):
    """Nameko provider giving workers the process's session, bound to the
    keyspace (EXCHANGE_CASSANDRA_KEYSPACE, or CASSANDRA_KEYSPACE in the
    container config for tests)."""

    def setup(self):
        settings = load_settings()
        keyspace = self.container.config.get("CASSANDRA_KEYSPACE",
                                             settings["EXCHANGE_CASSANDRA_KEYSPACE"])
        self.cluster = make_cluster(settings)
        self.session = self.cluster.connect(keyspace)

    def stop(self):
        self.cluster.shutdown()

    kill = stop

    def get_dependency(self, worker_ctx):
        return self.session
