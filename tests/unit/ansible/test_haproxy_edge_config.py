"""roles/haproxy's configuration for the three-zones inventory, rendered as
the role renders it and checked by the installed HAProxy (``haproxy -c``).
The edge bounds slow and greedy clients before they reach a gateway (the
frontend's http-request, keep-alive and tunnel timeouts, a per-server
maxconn with a queue, per-address connection limits) and tells the gateways
who the client is (X-Forwarded-For, believed from the edge only). What
those settings do to real connections: tests/integration/zones/test_edge_haproxy.py."""
import ipaddress
import re

import pytest

from gateway.auth import resolve_client_ip
from services.common.config import REPO_ROOT
from tests.unit.ansible import haproxy_render, kit

pytestmark = pytest.mark.skipif(not haproxy_render.Path(haproxy_render.HAPROXY).exists(),
                                reason="haproxy not installed")

THREE_ZONES = kit.INVENTORIES / "three-zones" / "hosts.yml"


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    return haproxy_render.render(THREE_ZONES, "edge-lb", tmp_path_factory.mktemp("edge")).read_text()


def section(config: str, name: str) -> list[str]:
    """The lines of one section (``frontend gateways``), comments left out."""
    found = re.search(rf"^{re.escape(name)}\n(.*?)(?=^\S|\Z)", config, re.M | re.S)
    assert found, f"no section {name!r}"
    return [line.strip() for line in found.group(1).splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_the_edge_configuration_is_valid_for_the_installed_haproxy(edge, tmp_path):
    config = tmp_path / "haproxy.cfg"
    config.write_text(edge)
    result = haproxy_render.check(config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_zone_hosts_configuration_is_valid_too(tmp_path):
    config = haproxy_render.render(THREE_ZONES, "zone-a", tmp_path)
    assert "frontend gateways" not in config.read_text()
    result = haproxy_render.check(config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_edge_frontend_bounds_each_phase_and_each_client_address(edge):
    frontend = section(edge, "frontend gateways")
    # Whole headers and buffered body, not only inactivity (timeout client).
    assert "timeout http-request 10s" in frontend
    assert "timeout http-keep-alive 30s" in frontend
    assert "option http-buffer-request" in frontend
    assert "tcp-request connection track-sc0 src" in frontend
    assert "tcp-request connection reject if { sc_conn_cur(0) gt 100 }" in frontend
    deny = next(line for line in frontend if line.startswith("http-request deny"))
    assert "status 429" in deny and '"code":-1003' in deny and "sc_conn_rate(0) gt 1000" in deny
    assert any(line.startswith("http-error status 503 content-type application/json")
               for line in frontend)


def test_the_edge_backend_queues_instead_of_overfilling_a_gateway(edge):
    backend = section(edge, "backend gateways")
    assert "timeout tunnel 60s" in backend
    assert "timeout queue 5s" in backend
    assert "option forwardfor" in backend
    servers = [line for line in backend if line.startswith("server ")]
    assert len(servers) == 3
    default_server = next(line for line in backend if line.startswith("default-server"))
    maxconn = int(re.search(r"\bmaxconn (\d+)", default_server).group(1))
    idle = int(re.search(r"\bpool-max-conn (\d+)", default_server).group(1))
    from gateway.app import MAX_CONCURRENT_REQUESTS
    # Requests at once plus HAProxy's idle connections kept for reuse: the
    # gateway keeps slots of its own (checks, its zone's direct clients).
    assert maxconn + idle < MAX_CONCURRENT_REQUESTS


def zones_host_address() -> str:
    """This machine's end of the zones' bridge, as scripts/zones.sh sets it."""
    script = (REPO_ROOT / "scripts" / "zones.sh").read_text()
    net = re.search(r"^NET=([\d.]+)$", script, re.M).group(1)
    return re.search(r"^HOST_ADDRESS=(\S+)$", script, re.M).group(1).replace("$NET", net)


def test_the_gateways_count_the_client_behind_the_edge_not_the_edge():
    """The edge reaches the zones' gateways from the bridge's host address
    (scripts/zones.sh) and appends the client's address to
    X-Forwarded-For; the gateways believe it from that address alone, so a
    client cannot pick its own address with a header of its own."""
    listing = kit.inventory_list(THREE_ZONES)
    settings = listing["_meta"]["hostvars"]["zone-a"]["exchange_settings"]
    proxies = tuple(ipaddress.ip_network(part.strip(), strict=False)
                    for part in settings["EXCHANGE_GATEWAY_TRUSTED_PROXIES"].split(","))
    edge_source = zones_host_address()
    assert resolve_client_ip(edge_source, "198.51.100.7", proxies) == "198.51.100.7"
    # eventlet joins repeated headers with ","; HAProxy's entry is the last.
    assert resolve_client_ip(edge_source, "203.0.113.9,198.51.100.7", proxies) == "198.51.100.7"
    # A zone host (a gateway's neighbour) is not a proxy: its header counts for nothing.
    assert resolve_client_ip("169.254.100.12", "203.0.113.9", proxies) == "169.254.100.12"
