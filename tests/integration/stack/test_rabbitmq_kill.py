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
import signal
from pathlib import Path

import pytest

from services.common import health
from tests.integration.stack.private_rabbit import private_node as started_node
from tests.integration.stack.private_rabbit import vms_of_group, wait_for

GONE_TIMEOUT = 20


@pytest.fixture
def private_node(settings, test_run_dir):
    """A RabbitMQ node of this test's own, started as `make up` starts one."""
    with started_node(settings, test_run_dir, "killtest") as node:
        yield node


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
