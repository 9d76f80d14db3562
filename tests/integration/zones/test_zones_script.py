"""scripts/zones.sh: three network namespaces joined by link-local veth links
to a private bridge, cut off and healed on demand, and removed again without
leaving anything behind on the machine."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.common.config import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "zones.sh"
ADDRESSES = {"zone-a": "169.254.100.11", "zone-b": "169.254.100.12", "zone-c": "169.254.100.13"}
PORT = 19999


def can_make_namespaces() -> bool:
    """Root with CAP_SYS_ADMIN and CAP_NET_ADMIN, and ``ip`` and ``iptables``
    installed: root in a container without them (Docker's default
    capabilities) cannot make a network namespace. Probed with a throw-away
    one (``unshare --net``), which leaves nothing behind."""
    if os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("ip", "iptables", "unshare")):
        return False
    probe = subprocess.run(["unshare", "--net", "ip", "link", "add", "exz-probe", "type", "veth",
                            "peer", "name", "exz-probe1"], capture_output=True, timeout=30)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="zones.sh needs root")


def zones(*args, check=True):
    result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=180)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def machine_view() -> tuple[str, str, str]:
    """This machine's interfaces (but ours), routes and firewall rules."""
    links = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True).stdout
    ours = ("exz-",)
    links = "\n".join(line for line in links.splitlines() if not line.startswith(ours))
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    routes = "\n".join(line for line in routes.splitlines() if "exz-br" not in line)
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    return links, routes, rules


@pytest.fixture
def fresh_zones():
    if not can_make_namespaces():
        pytest.skip("network namespaces need root with CAP_SYS_ADMIN and CAP_NET_ADMIN, "
                    "ip and iptables")
    if any(Path(f"/run/netns/{name}").exists() for name in ADDRESSES):
        pytest.skip("zones exist already (a three-zones deployment may be using them)")
    before = machine_view()
    try:
        zones("up")
        yield before
    finally:
        zones("down", check=False)


def listener(zone: str) -> subprocess.Popen:
    """A TCP server inside the zone that answers 'ok' to each connection (bounded: 60 s)."""
    code = ("import socket,sys\n"
            "s=socket.create_server((sys.argv[1], int(sys.argv[2])))\n"
            "s.settimeout(60)\n"
            "print('ready', flush=True)\n"
            "while True:\n"
            "    c,_=s.accept(); c.sendall(b'ok'); c.close()\n")
    proc = subprocess.Popen(["ip", "netns", "exec", zone, sys.executable, "-c", code,
                             ADDRESSES[zone], str(PORT)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def reaches(source: str, target: str) -> bool:
    code = ("import socket,sys\n"
            "try:\n"
            "    c=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)\n"
            "    sys.exit(0 if c.recv(2)==b'ok' else 1)\n"
            "except OSError:\n"
            "    sys.exit(1)\n")
    argv = [sys.executable, "-c", code, ADDRESSES[target], str(PORT)]
    if source != "host":
        argv = ["ip", "netns", "exec", source, *argv]
    return subprocess.run(argv, timeout=30).returncode == 0


def test_zones_come_up_with_their_link_local_addresses(fresh_zones):
    for name, address in ADDRESSES.items():
        shown = subprocess.run(["ip", "-n", name, "-br", "addr", "show", "eth0"],
                               capture_output=True, text=True).stdout
        assert f"{address}/24" in shown
    # up again changes nothing and still succeeds
    zones("up")
    status = zones("status").stdout
    assert status.count("link UP  cut no") == 3


def test_zones_reach_each_other_and_the_host_until_cut(fresh_zones):
    server = listener("zone-b")
    try:
        assert reaches("zone-a", "zone-b") and reaches("zone-c", "zone-b") and reaches("host", "zone-b")
        zones("cut", "zone-b")
        assert not reaches("zone-a", "zone-b") and not reaches("host", "zone-b")
        assert "cut yes" in zones("status").stdout
        zones("heal", "b")
        assert reaches("zone-a", "zone-b")
        zones("unplug", "zone-b")
        assert not reaches("zone-c", "zone-b")
        zones("plug", "zone-b")
        for _ in range(20):  # the bridge port forwards again after the link comes up
            if reaches("zone-c", "zone-b"):
                break
            time.sleep(0.5)
        else:
            pytest.fail("zone-b not reachable after plug")
    finally:
        server.kill()
        server.wait(timeout=10)


def test_down_removes_everything_and_ends_the_zones_processes(fresh_zones):
    server = listener("zone-c")
    zones("down")
    assert server.wait(timeout=90) is not None
    for name in ADDRESSES:
        assert not Path(f"/run/netns/{name}").exists()
    assert subprocess.run(["ip", "link", "show", "exz-br"], capture_output=True).returncode != 0
    assert machine_view() == fresh_zones


def test_an_unknown_zone_is_refused_in_one_line():
    result = zones("cut", "zone-q", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "[zones] ERROR: unknown zone zone-q: one of zone-a, zone-b, zone-c"


def test_the_drill_neither_reuses_nor_removes_zones_that_exist_already(fresh_zones):
    """Zones that are up belong to another deployment: the drill stops at
    once with a clear error, and they are still there afterwards."""
    result = zones("drill", check=False)
    assert result.returncode == 2
    assert "exists already" in result.stderr and "another three-zones deployment" in result.stderr
    assert "deployed" not in result.stdout and "zones down" not in result.stdout
    for name in ADDRESSES:
        assert Path(f"/run/netns/{name}").exists()
    assert zones("status").stdout.count("link UP  cut no") == 3
