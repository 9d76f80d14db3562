"""Killing and starting the stack's Memcached, for tests of what its loss does."""
import os
import signal
import time

from stack.servers import SERVERS


def kill_memcached(settings):
    """SIGKILL the stack's Memcached and wait until it is gone."""
    server = next(s for s in SERVERS if s.name == "memcached")
    process = server.process(settings)
    pid = process.running_pid()
    assert pid is not None, "memcached of the stack is not running"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process.running_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.1)


def start_memcached(settings):
    server = next(s for s in SERVERS if s.name == "memcached")
    server.process(settings).start()
    deadline = time.monotonic() + 10
    while not server.probe(settings).up and time.monotonic() < deadline:
        time.sleep(0.1)
