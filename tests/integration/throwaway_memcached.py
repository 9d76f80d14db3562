"""A real Memcached of a test's own, to kill or restart mid-test (the
stack's is shared with other tests)."""
import os
import shutil
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayMemcached:
    """A real memcached of our own, to kill mid-test (the stack's is shared)."""

    def __init__(self, port: int):
        self.port = port
        self.process = None

    def start(self):
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        argv = [binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("throw-away memcached did not start")

    def restart(self):
        """Killed and started again on its port: empty, and every connection
        a client had to it is dead."""
        self.kill()
        return self.start()

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
