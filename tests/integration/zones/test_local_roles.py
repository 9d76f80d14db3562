"""The `local` inventory's roles on this machine: a component rendered by
stack/, kept running by this host's supervisord, and a second run that
changes nothing.

Deploys Memcached only (the lightest server) into a private host directory on
its own port, so the shared stack of `make up` is untouched, and shuts its
supervisord down at the end.
"""
import os
import re
import shutil
import subprocess
import uuid
import time

import pytest

from services.common import health
from services.common.config import REPO_ROOT
from tests.unit.ansible import kit

PORT = 31419  # not a port of config/defaults.env


def recap(output: str) -> dict[str, int]:
    match = re.search(r"localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                      output)
    assert match, output[-2000:]
    ok, changed, unreachable, failed = map(int, match.groups())
    return {"ok": ok, "changed": changed, "unreachable": unreachable, "failed": failed}


@pytest.fixture
def host_dir():
    # Under run/ (git-ignored): the servers' system user must reach it, and
    # pytest's tmp_path is private to root.
    path = REPO_ROOT / "run" / "test-ansible" / uuid.uuid4().hex[:8] / "localhost"
    path.parent.mkdir(parents=True)
    os.chmod(path.parent, 0o711)
    yield path
    conf = path / "supervisor" / "supervisord.conf"
    if conf.exists():
        subprocess.run([str(kit.BIN / "supervisorctl"), "-c", str(conf), "shutdown"],
                       capture_output=True, timeout=60)
        for _ in range(60):  # bounded: supervisord stops its programs first
            if not any(health.port_open("127.0.0.1", port) for port in (PORT, PORT + 1)):
                break
            time.sleep(0.5)
    shutil.rmtree(path.parent, ignore_errors=True)


def deploy(host_dir, port=PORT):
    return kit.playbook(kit.INVENTORIES / "local" / "hosts.yml", "--tags", "memcached",
                        "-e", f'{{"exchange_host_dir": "{host_dir}", '
                              f'"exchange_settings": {{"EXCHANGE_MEMCACHED_PORT": "{port}"}}}}')


def supervisorctl(host_dir, *args):
    conf = host_dir / "supervisor" / "supervisord.conf"
    return subprocess.run([str(kit.BIN / "supervisorctl"), "-c", str(conf), *args],
                          capture_output=True, text=True, timeout=30)


def test_local_role_deploys_supervises_and_is_idempotent(host_dir):
    first = deploy(host_dir)
    assert first.returncode == 0, first.stdout[-3000:]
    assert recap(first.stdout)["changed"] > 0
    assert health.port_open("127.0.0.1", PORT)
    # The program is stack/servers.py's command line for memcached, on our port.
    program = (host_dir / "supervisor" / "conf.d" / "memcached.conf").read_text()
    assert f"-l 127.0.0.1 -p {PORT}" in program and "user=exchange" in program

    second = deploy(host_dir)
    assert second.returncode == 0, second.stdout[-3000:]
    assert recap(second.stdout) == {**recap(second.stdout), "changed": 0, "failed": 0}

    # kill -9: supervisord starts it again, on the same port.
    pid = int(supervisorctl(host_dir, "pid", "memcached").stdout.strip())
    subprocess.run(["kill", "-9", str(pid)], check=True)
    for _ in range(60):
        now = supervisorctl(host_dir, "pid", "memcached").stdout.strip()
        if now.isdigit() and int(now) not in (0, pid) and health.port_open("127.0.0.1", PORT):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"memcached not restarted by supervisord: {supervisorctl(host_dir, 'status').stdout}")


def test_a_changed_setting_reaches_the_running_program(host_dir):
    assert deploy(host_dir).returncode == 0
    before = int(supervisorctl(host_dir, "pid", "memcached").stdout.strip())
    moved = deploy(host_dir, port=PORT + 1)
    assert moved.returncode == 0, moved.stdout[-3000:]
    assert recap(moved.stdout)["changed"] > 0
    assert int(supervisorctl(host_dir, "pid", "memcached").stdout.strip()) != before
    assert health.port_open("127.0.0.1", PORT + 1)
    assert not health.port_open("127.0.0.1", PORT)
