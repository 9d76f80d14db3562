"""A RabbitMQ node of a test's own, started with the stack's own functions
(stack/servers.py: its rabbitmq.conf, enabled plugins and process, as
`make up` starts one), with a run directory and free ports of its own: the
dev stack's node is not touched."""
import contextlib
import os
import shutil
import signal
import socket
import time
import uuid
from pathlib import Path

from stack.servers import SERVERS

START_TIMEOUT = 180   # a loaded 2-core machine boots a node in 10-60 s


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


@contextlib.contextmanager
def private_node(settings, test_run_dir: Path, name: str):
    """Yields ``(its settings, its Process)`` once the node answers; stops
    it and removes its directory after. ``name``: its node name's prefix."""
    amqp, dist, epmd, metrics = free_ports(4)
    base = test_run_dir / f"rabbit-{name}-{uuid.uuid4().hex[:8]}"
    mine = settings.with_overrides(
        EXCHANGE_RUN_DIR=str(base), EXCHANGE_RABBITMQ_PORT=str(amqp),
        EXCHANGE_RABBITMQ_DIST_PORT=str(dist), EXCHANGE_EPMD_PORT=str(epmd),
        EXCHANGE_RABBITMQ_METRICS_PORT=str(metrics),
        EXCHANGE_RABBITMQ_NODENAME=f"{name}@localhost",
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
