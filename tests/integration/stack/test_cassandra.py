"""Cassandra through the project's cluster factory and CQL runner."""
import uuid

import pytest
from cassandra import ConsistencyLevel

from services.common.cassandra import make_cluster
from services.common.migrations import Migration, apply_cql_migrations


@pytest.fixture(scope="module")
def session(test_settings):
    cluster = make_cluster(test_settings)
    yield cluster.connect()
    cluster.shutdown()


def test_write_and_read_back_at_the_configured_consistency(session, test_settings):
    keyspace = test_settings["EXCHANGE_CASSANDRA_KEYSPACE"]
    configured = ConsistencyLevel.name_to_value[test_settings["EXCHANGE_CASSANDRA_CONSISTENCY"]]
    key = uuid.uuid4().hex
    insert = session.prepare(f"INSERT INTO {keyspace}.health_check (id, value, written_at) "
                             "VALUES (?, ?, toTimestamp(now()))")
    select = session.prepare(f"SELECT value FROM {keyspace}.health_check WHERE id = ?")
    write = session.execute(insert, (key, "written"))
    read = session.execute(select, (key,))
    assert read.one().value == "written"
    # The default execution profile carries the configured level to every query.
    assert write.response_future.message.consistency_level == configured
    assert read.response_future.message.consistency_level == configured


def test_cql_runner_applies_each_file_once(session, test_settings):
    keyspace = f"stacktest_{uuid.uuid4().hex[:8]}"
    migrations = [
        Migration("cql", 1, "things", "CREATE TABLE IF NOT EXISTS {keyspace}.things "
                  "(id int PRIMARY KEY, v text);"),
        Migration("cql", 2, "seed", "INSERT INTO {keyspace}.things (id, v) VALUES (1, 'a');\n"
                  "-- a comment line\nINSERT INTO {keyspace}.things (id, v) VALUES (2, 'b');"),
    ]
    replication = test_settings["EXCHANGE_CASSANDRA_REPLICATION"]
    try:
        first = apply_cql_migrations(session, keyspace, replication, migrations)
        second = apply_cql_migrations(session, keyspace, replication, migrations)
        assert [m.version for m in first] == [1, 2]
        assert second == []
        rows = sorted(r.id for r in session.execute(f"SELECT id FROM {keyspace}.things"))
        assert rows == [1, 2]
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
