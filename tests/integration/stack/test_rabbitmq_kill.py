"""The pid the local stack records for RabbitMQ is the node's (beam.smp), so a
kill -9 of it kills the node.

stack/servers.py started the `rabbitmq-server` shell script, which runs the
Erlang VM as its child and waits: the recorded pid was the shell's. A kill -9
of it left the node running orphaned, still serving on its ports, while
`make status` and `make down` saw it gone (and the next start failed on the
taken ports). The zones' supervisord had the same fault (ansible/roles/
rabbitmq, session 10). This starts a private node with the stack's own
functions (a run directory and ports of its own: the dev stack's node is not
touched), kills its recorded pid and checks that nothing of it is left."""
import os
import shutil
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest

from services.common import health
from stack.servers import SERVERS

START_TIMEOUT = 180   # a loaded 2-core machine boots a node in 10-60 s
GONE_TIMEOUT = 20


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def vms_of_group(pgid: int) -> list[int]:
    """The Erlang VMs (beam.smp) still running in the process group ``pgid``
    (the killed one stays a zombie until this process, its parent, exits)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                state = stat[stat.rindex(")") + 2:].split()[0]
                if (os.getpgid(int(entry.name)) == pgid and state != "Z"
                        and (entry / "comm").read_text().strip() == "beam.smp"):
                    found.append(int(entry.name))
            except (OSError, ProcessLookupError):
                continue
    return found


def wait_for(condition, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


@pytest.fixture
def private_node(settings, test_run_dir):
    """A RabbitMQ node of this test's own, started as `make up` starts one."""
    amqp, dist, epmd, metrics = free_ports(4)
    base = test_run_dir / f"rabbit-kill-{uuid.uuid4().hex[:8]}"
    mine = settings.with_overrides(
        EXCHANGE_RUN_DIR=str(base), EXCHANGE_RABBITMQ_PORT=str(amqp),
        EXCHANGE_RABBITMQ_DIST_PORT=str(dist), EXCHANGE_EPMD_PORT=str(epmd),
        EXCHANGE_RABBITMQ_METRICS_PORT=str(metrics),
        EXCHANGE_RABBITMQ_NODENAME="killtest@localhost",
        EXCHANGE_RABBITMQ_CLUSTER_NODES="", EXCHANGE_RABBITMQ_ERLANG_COOKIE="")
    server = next(s for s in SERVERS if s.name == "rabbitmq")
    for sub in ("logs", "pids", "home"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(base / "home", settings["EXCHANGE_SYSTEM_USER"])
    server.configure(mine)
    companions = [companion(mine) for companion in server.companions]
    node = server.process(mine)
    group = None
    try:
        for companion in companions:
            companion.start()
        group = node.start()   # the session leader: its pid is the group's id
        assert wait_for(lambda: server.probe(mine).up, START_TIMEOUT, 1), (
            f"the private node did not start; see {node.log}")
        yield mine, node
    finally:
        node.stop(timeout=30)
        if group is not None:   # whatever outlived its recorded pid (the old orphan)
            for pid in vms_of_group(group):
                os.kill(pid, signal.SIGKILL)
        for companion in companions:
            companion.stop(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


def test_the_recorded_pid_is_the_node_and_a_kill_9_of_it_kills_the_node(private_node):
    mine, node = private_node
    pid = node.running_pid()
    assert pid is not None
    comm = Path(f"/proc/{pid}/comm").read_text().strip()
    assert comm == "beam.smp", f"the recorded pid {pid} is {comm!r}, not the node"

    os.kill(pid, signal.SIGKILL)
    # The node is gone: its AMQP port closes and no Erlang VM is left in its
    # process group (the old shell's child ran on there).
    assert wait_for(lambda: not health.port_open(mine.host, mine.int("EXCHANGE_RABBITMQ_PORT")),
                    GONE_TIMEOUT), "the node still serves after a kill -9 of its recorded pid"
    assert wait_for(lambda: not vms_of_group(pid), GONE_TIMEOUT), (
        f"an Erlang VM of the node's session outlived the kill: {vms_of_group(pid)}")
    assert node.running_pid() is None
