"""What /health answers: 503 only when the exchange cannot take orders."""
import pytest

from services.common.health import ORDER_PATH, Probe, verdict

NAMES = ["postgresql", "rabbitmq", "memcached", "cassandra", "keycloak", "service:orders",
         "service:matching", "service:wallets", "service:users", "service:marketdata",
         "service:registry"]


def probes(down=(), degraded=()):
    return [Probe(name, name not in down, 1.0, "degraded" if name in degraded else "ok",
                  required=name in ORDER_PATH) for name in NAMES]


def test_everything_up():
    assert verdict(probes()) == ("up", 200)


@pytest.mark.parametrize("name", ["memcached", "cassandra", "keycloak", "service:marketdata",
                                  "service:registry"])
def test_a_part_off_the_order_path_down_degrades_with_200(name):
    assert verdict(probes(down={name})) == ("degraded", 200)


@pytest.mark.parametrize("name", sorted(ORDER_PATH))
def test_a_part_of_the_order_path_down_is_503(name):
    assert verdict(probes(down={name, "memcached"})) == ("down", 503)


def test_a_service_that_reports_itself_degraded_degrades():
    assert verdict(probes(degraded={"service:orders"})) == ("degraded", 200)
