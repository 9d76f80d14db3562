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
    assert config["seed_provider"][0]["parameters"][0]["seeds"] == "127.0.0.1:37000"
    assert config["endpoint_snitch"] == "SimpleSnitch"
    assert not (local.run_dir / "cassandra" / "conf" / "cassandra-rackdc.properties").exists()
    assert "-Dcassandra.ring_delay_ms=0" in servers._cassandra_process(local).argv


def test_a_zone_node_gossips_its_rack_and_knows_the_seeds(settings):
    zone = settings(EXCHANGE_BIND_HOST="169.254.100.12", EXCHANGE_CASSANDRA_RACK="zone_b",
                    EXCHANGE_CASSANDRA_SEEDS="169.254.100.11,169.254.100.12")
    config = cassandra_yaml(zone)
    assert config["seed_provider"][0]["parameters"][0]["seeds"] == \
        "169.254.100.11:37000,169.254.100.12:37000"
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
