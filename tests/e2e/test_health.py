"""The health view through the public interfaces: `GET /health` on the
gateway and `python -m stack status` (what `make status` runs)."""
import os
import shutil
import subprocess
import sys

import requests

from services.common.config import REPO_ROOT


def stack_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "stack", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})})


def health(settings):
    response = requests.get(f"{settings.gateway_url}/health", timeout=15)
    return response.status_code, {c["name"]: c for c in response.json()["components"]}


def test_every_component_is_up(settings):
    status, components = health(settings)
    assert status == 200
    for name in ("postgresql", "rabbitmq", "memcached", "cassandra", "keycloak"):
        assert components[name]["up"], components[name]
        assert components[name]["latency_ms"] > 0
    result = stack_cli("status")
    assert result.returncode == 0, result.stdout
    assert "DOWN" not in result.stdout


def test_a_dead_cache_degrades_health_but_the_exchange_stays_up(settings, memcached_killed):
    """Memcached only speeds up reads (they fall back to Cassandra): its loss
    is ``degraded`` with 200, not 503 (issue 11); `make status` still names it."""
    response = requests.get(f"{settings.gateway_url}/health", timeout=15)
    assert (response.status_code, response.json()["status"]) == (200, "degraded")
    status, components = health(settings)
    assert not components["memcached"]["up"]
    assert components["postgresql"]["up"]
    result = stack_cli("status")
    assert result.returncode == 1
    line = next(l for l in result.stdout.splitlines() if l.startswith("memcached"))
    assert "DOWN" in line


def test_a_taken_port_stops_up_with_one_line(settings, test_run_dir):
    taken = settings["EXCHANGE_POSTGRES_PORT"]
    # A second stack in its own run directory: the running stack holds its
    # ports. Under the run's own directory (test_run_dir): two runs in
    # namespaces of their own must not remove each other's scratch stack.
    scratch = test_run_dir / "scratch-port-test"
    try:
        result = stack_cli("up", env={"EXCHANGE_RUN_DIR": str(scratch)})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {taken} for postgresql is already taken" in lines[0]
    assert "EXCHANGE_POSTGRES_PORT" in lines[0]


def test_liveness_answers_without_asking_any_server(settings):
    """What the edge HAProxy checks (ansible/roles/haproxy): 200 from the
    process alone; /health stays the deep view."""
    response = requests.get(f"{settings.gateway_url}/health/live", timeout=15)
    assert (response.status_code, response.json()) == (200, {"status": "live"})
