"""A gateway started on a port that another process already listens on
exits at once, saying so, instead of sharing the port (gateway/__main__.py).

The port is held by a socket that set SO_REUSEPORT, as a gateway made by
``socketio.run`` did (eventlet's default): two such sockets of one user
share the port and the kernel splits new connections between them, so a
second gateway used to start quietly and take half of the first one's
connections (Socket.IO sessions then break). Only the listening socket of
the second one is under test: it must fail before connecting to anything,
so it is given no metrics port and the test needs none of the stack."""
import os
import socket
import subprocess
import sys
import time

import pytest

from services.common.config import REPO_ROOT

EXIT_WITHIN_S = 30


@pytest.fixture
def held_port():
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen(8)
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


def test_a_second_gateway_on_a_taken_port_exits_with_address_in_use(held_port, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "EXCHANGE_BIND_HOST": "127.0.0.1",
           "EXCHANGE_GATEWAY_PORT": str(held_port), "EXCHANGE_METRICS_PORT": "",
           "EXCHANGE_LOG_DIR": str(tmp_path)}
    log = tmp_path / "gateway.log"
    # Polled, not communicate(timeout=): under eventlet's patched subprocess
    # its TimeoutExpired is not the class this module would catch.
    with open(log, "wb") as out:
        gateway = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=REPO_ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + EXIT_WITHIN_S
        while gateway.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()
            pytest.fail(f"the gateway shared port {held_port} and served for {EXIT_WITHIN_S} s: "
                        f"{log.read_text()[-2000:]}")
    output = log.read_text()
    assert gateway.returncode != 0, output
    assert "address already in use" in output.lower(), output
    assert f"127.0.0.1:{held_port}" in output, output
