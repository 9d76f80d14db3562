"""roles/watchdog's health_watchdog.py under a real supervisord: a program
that runs but never answers its probe is restarted (and restarted later only
after twice the wait); a program that answers is left alone. No namespaces:
the programs listen on 127.0.0.1 (issue 15: a RabbitMQ node hung alive in
"Starting broker..." after its pause ended; supervisord alone cannot see it)."""
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path

import pytest

from services.common.config import REPO_ROOT
from tests.integration.zones import zone_kit as kit

WATCHDOG = REPO_ROOT / "ansible" / "roles" / "watchdog" / "files" / "health_watchdog.py"
SUPERVISOR_BIN = Path(sys.executable).parent


@pytest.fixture
def supervised(tmp_path):
    """A supervisord with `stuck` (alive, never answers: nothing listens on
    its probe's port), `fine` (an HTTP server answering 200) and the watchdog
    judging both every 0.5 s with a 2 s threshold."""
    stuck_port, fine_port = kit.free_port(), kit.free_port()
    sock = tmp_path / "supervisor.sock"
    (tmp_path / "fine").mkdir()
    (tmp_path / "fine" / "liveness").write_text("ok")
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"""
[unix_http_server]
file={sock}
[supervisord]
logfile={tmp_path}/supervisord.log
pidfile={tmp_path}/supervisord.pid
childlogdir={tmp_path}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{sock}
[program:stuck]
command={sys.executable} -c "import time; time.sleep(600)"
startsecs=1
[program:fine]
command={sys.executable} -m http.server --bind 127.0.0.1 {fine_port}
directory={tmp_path}/fine
startsecs=1
[program:health_watchdog]
command={sys.executable} {WATCHDOG} --socket {sock} --every 0.5
    --watch=stuck:http://127.0.0.1:{stuck_port}/liveness:2
    --watch=fine:http://127.0.0.1:{fine_port}/liveness:2
environment=PYTHONPATH="{REPO_ROOT}"
redirect_stderr=true
stdout_logfile={tmp_path}/health_watchdog.log
""")
    subprocess.run([SUPERVISOR_BIN / "supervisord", "-c", conf], check=True, timeout=30)
    from supervisor.xmlrpc import SupervisorTransport
    rpc = xmlrpc.client.ServerProxy("http://127.0.0.1",
                                    transport=SupervisorTransport(None, None, f"unix://{sock}"))
    try:
        yield rpc, tmp_path / "health_watchdog.log"
    finally:
        subprocess.run([SUPERVISOR_BIN / "supervisorctl", "-c", conf, "shutdown"],
                       capture_output=True, timeout=90)


def running_pid(rpc, name: str, deadline: float) -> int:
    while time.monotonic() < deadline:
        info = rpc.supervisor.getProcessInfo(name)
        if info["statename"] == "RUNNING":
            return info["pid"]
        time.sleep(0.2)
    raise AssertionError(f"{name} not RUNNING in time")


def test_a_program_alive_but_not_answering_is_restarted_and_a_healthy_one_is_not(supervised):
    rpc, log = supervised
    deadline = time.monotonic() + 120  # generous: a loaded machine
    first_stuck = running_pid(rpc, "stuck", deadline)
    fine = running_pid(rpc, "fine", deadline)
    # Two restarts of `stuck`: after 2 s unhealthy, then after 4 s (doubled).
    seen = [first_stuck]
    while len(seen) < 3 and time.monotonic() < deadline:
        pid = rpc.supervisor.getProcessInfo("stuck")["pid"]
        if pid and pid != seen[-1]:
            seen.append(pid)
        time.sleep(0.2)
    text = log.read_text()
    assert len(seen) == 3, f"stuck was not restarted twice: pids {seen}\n{text}"
    restarts = [line for line in text.splitlines() if "stuck: running but not healthy for" in line]
    assert len(restarts) >= 2 and "(threshold 2 s" in restarts[0] and "(threshold 4 s" in restarts[1], text
    assert rpc.supervisor.getProcessInfo("fine")["pid"] == fine, "a healthy program was restarted"
    # Only restarts count: a probe of `fine` before its server has bound its
    # port (supervisord says RUNNING after 1 s) may log a failed probe.
    assert "fine: running but not healthy for" not in text, text
