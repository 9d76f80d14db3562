"""The cluster settings stack/servers.py renders for the three-zones
inventory, and the local stack's rendering left as it was when they are
empty (config/defaults.env)."""
import json

import pytest

from services.common.config import load_settings
from stack import servers


@pytest.fixture
def settings(tmp_path):
    def make(**overrides):
        return load_settings({"EXCHANGE_RUN_DIR": str(tmp_path), **overrides})
    return make


def cassandra_yaml(settings):
    servers._cassandra_configure(settings)
    return json.loads((settings.run_dir / "cassandra" / "conf" / "cassandra.yaml").read_text())


def test_local_cassandra_is_one_node_of_its_own(settings):
    local = settings()
    config = cassandra_yaml(local)
    assert config["seed_provider"][0]["parameters"][0]["seeds"] == "127.0.0.1:17000"
    assert config["endpoint_snitch"] == "SimpleSnitch"
    assert not (local.run_dir / "cassandra" / "conf" / "cassandra-rackdc.properties").exists()
    assert "-Dcassandra.ring_delay_ms=0" in servers._cassandra_process(local).argv


def test_a_zone_node_gossips_its_rack_and_knows_the_seeds(settings):
    zone = settings(EXCHANGE_BIND_HOST="169.254.100.12", EXCHANGE_CASSANDRA_RACK="zone_b",
                    EXCHANGE_CASSANDRA_SEEDS="169.254.100.11,169.254.100.12")
    config = cassandra_yaml(zone)
    assert config["seed_provider"][0]["parameters"][0]["seeds"] == \
        "169.254.100.11:17000,169.254.100.12:17000"
    assert config["endpoint_snitch"] == "GossipingPropertyFileSnitch"
    assert config["listen_address"] == "169.254.100.12"
    rackdc = (zone.run_dir / "cassandra" / "conf" / "cassandra-rackdc.properties").read_text()
    assert rackdc == "dc=exchange\nrack=zone_b\n"
    assert "-Dcassandra.ring_delay_ms=0" not in servers._cassandra_process(zone).argv


def test_local_rabbitmq_is_a_single_short_named_node(settings):
    local = settings()
    assert servers._rabbit_env(local)["RABBITMQ_NODENAME"] == "exchange@localhost"
    assert servers._rabbit_env(local)["RABBITMQ_USE_LONGNAME"] == "false"
    assert servers._rabbit_cluster_lines(local) == []


def test_a_zone_rabbitmq_node_lists_its_peers_and_pauses_in_a_minority(settings):
    zone = settings(EXCHANGE_RABBITMQ_NODENAME="exchange@169.254.100.11",
                    EXCHANGE_RABBITMQ_CLUSTER_NODES="exchange@169.254.100.11,exchange@169.254.100.12")
    assert servers._rabbit_env(zone)["RABBITMQ_USE_LONGNAME"] == "true"
    assert servers._rabbit_cluster_lines(zone) == [
        "cluster_formation.peer_discovery_backend = classic_config",
        "cluster_formation.classic_config.nodes.1 = exchange@169.254.100.11",
        "cluster_formation.classic_config.nodes.2 = exchange@169.254.100.12",
        "cluster_partition_handling = pause_minority"]


def keycloak(settings):
    # _java() only locates the JVM; stack/ needs it present (make up installs it).
    return servers._keycloak_process(settings)


def test_local_keycloak_is_a_development_node_on_its_own_files(settings):
    process = keycloak(settings())
    assert process.argv[1] == "start-dev"
    assert not any(key.startswith(("KC_DB", "KC_CACHE")) for key in process.env)


def test_a_zone_keycloak_is_a_production_node_clustered_on_the_shared_database(settings):
    zone = settings(EXCHANGE_BIND_HOST="169.254.100.12", EXCHANGE_POSTGRES_HOST="127.0.0.1",
                    EXCHANGE_KEYCLOAK_DB="postgres")
    process = keycloak(zone)
    assert process.argv[1] == "start"
    assert process.env["KC_DB"] == "postgres"
    assert (process.env["KC_DB_URL_HOST"], process.env["KC_DB_URL_PORT"]) == ("127.0.0.1", "15432")
    assert process.env["KC_DB_URL_DATABASE"] == "keycloak"
    assert (process.env["KC_CACHE"], process.env["KC_CACHE_STACK"]) == ("ispn", "jdbc-ping")
    assert process.env["KC_CACHE_EMBEDDED_NETWORK_BIND_ADDRESS"] == "169.254.100.12"
    # The password travels in the environment, never on the command line.
    assert "local-dev-only-keycloak-db" not in " ".join(process.argv)


def test_an_unknown_keycloak_database_stops_with_the_setting_named(settings):
    with pytest.raises(servers.StackError, match="EXCHANGE_KEYCLOAK_DB"):
        keycloak(settings(EXCHANGE_KEYCLOAK_DB="mysql"))
