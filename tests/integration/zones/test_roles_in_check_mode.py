"""Roles in check mode (site.yml --check: writes nothing, starts nothing,
renders every template), on the local inventory's host.

roles/watchdog renders its program for a host of every watched kind
(review R of session 9): the watchdog turned on as
the three-zones inventory does, on the local inventory's host placed in the
rabbitmq, cassandra and patroni groups (a second, temporary inventory adds
patroni). Check mode writes nothing and starts nothing, but renders every
template: the undefined variable of session 9 (component_extra_env, fixed
in c820807) stopped the first fresh-clone drill at this task and fails here.
"""
import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from services.common.config import REPO_ROOT
from tests.unit.ansible import kit

RABBITMQ_PACKAGE = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")


def check_run(tags: str, extra_vars: dict, *inventories) -> subprocess.CompletedProcess:
    host_dir = REPO_ROOT / "run" / "test-ansible" / uuid.uuid4().hex[:8] / "localhost"
    sources = [arg for inventory in (kit.INVENTORIES / "local" / "hosts.yml", *inventories)
               for arg in ("-i", str(inventory))]
    result = kit.run("ansible-playbook", *sources, "site.yml", "--check", "--diff", "--tags", tags,
                     "-e", f"ansible_python_interpreter={kit.BIN / 'python'}",
                     "-e", json.dumps({"exchange_host_dir": str(host_dir), **extra_vars}), timeout=300)
    assert not host_dir.exists()  # check mode: nothing written
    return result


def test_the_watchdog_program_renders_for_rabbitmq_cassandra_and_patroni(tmp_path):
    extra = tmp_path / "patroni.yml"
    extra.write_text("all:\n  children:\n    patroni:\n      hosts:\n        localhost:\n")
    result = check_run("watchdog", {"watchdog_enabled": True}, extra)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"TASK \[watchdog : Write the watchdog's supervisor program\]\s*\*+\s*"
                     r"(--- before\n.*\n)?.*changed: \[localhost\]", result.stdout, re.S), result.stdout[-3000:]
    program = result.stdout
    for watch in ("--watch=rabbitmq:server:rabbitmq:180", "--watch=cassandra:server:cassandra:600",
                  "--watch=patroni:http://127.0.0.1:18008/liveness:120"):
        assert watch in program, program[-3000:]


STOP_TASK = r"TASK \[rabbitmq : Stop unless the installed package is the one the fixed module was checked against\]\s*\*+\s*"


@pytest.mark.skipif(not RABBITMQ_PACKAGE.exists(), reason="rabbitmq-server not installed")
def test_a_rabbitmq_package_the_fixed_module_was_not_checked_against_stops_the_play():
    """roles/rabbitmq loads its own rabbit_node_monitor in front of the
    installed one; another package (a Debian update) stops the play, naming
    the version and the module's digest (review R of session 9). The run
    with the checked version is only read up to that task: the component
    role's rendering does not work in check mode."""
    checked = check_run("rabbitmq", {"rabbitmq_fix_global_hang": True})
    assert re.search(STOP_TASK + r"skipping: \[localhost\]", checked.stdout), checked.stdout[-3000:]
    other = check_run("rabbitmq", {"rabbitmq_fix_global_hang": True,
                                   "rabbitmq_fix_checked_version": "3.10.8-1.1+deb12u99"})
    assert other.returncode != 0
    assert re.search(STOP_TASK + r"\[ERROR\]: Task failed: Action failed: rabbitmq: rabbitmq-server "
                     r"\S+ \(rabbit_node_monitor.beam [0-9a-f]{64}\)", other.stdout), other.stdout[-3000:]
