"""The compose stack (docker-compose.yml): on the host, and inside its app containers.

On the host (`make test` runs these through tests/e2e/test_compose_smoke.py):

    python -m stack.compose install      Debian's docker.io, docker-compose, debootstrap if missing
    python -m stack.compose daemon       a private dockerd: socket, pid file and state under
                                         run/docker, images under EXCHANGE_CACHE_DIR/docker
    python -m stack.compose base         the base image debian:bookworm-slim, made with
                                         debootstrap from apt's Debian mirror when absent
    python -m stack.compose build|up|down   docker-compose against that daemon
    python -m stack.compose stop         stop the private dockerd

No image registry is reachable from these machines: nothing is ever pulled;
the images are built from docker/Dockerfile on the locally made base. On a
machine with Docker and a registry, plain `docker compose up --build` does the
same (the base image is pulled as usual).

Inside the app image (docker/Dockerfile's ENTRYPOINT), with the compose
settings in the environment:

    run NAME     exec one of stack/apps.py's processes (service:<name>, gateway)
    probe NAME   exit 0 when that process answers its health probe
    prepare      stack/prepare.py's steps against the compose servers
    seed         wait for the services, then stack/seed.py's demo
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.common.config import REPO_ROOT, Settings, load_settings
from stack.proc import StackError

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
PROJECT = "exchange"
BASE_IMAGE = "debian:bookworm-slim"
PACKAGES = ("docker.io", "docker-compose", "debootstrap")


def say(message: str) -> None:
    print(f"[compose] {message}", flush=True)


# ---------------------------------------------------------------- host: install

def install() -> None:
    """Docker is needed only for the compose stack, never by `make up`."""
    missing = [p for p in PACKAGES if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
    ).stdout != "install ok installed"]
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError(f"installing {' '.join(missing)} needs root")
    say(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # The packages' own services (a system dockerd) are not ours: keep apt from starting them.
    policy = Path("/usr/sbin/policy-rc.d")
    added = not policy.exists()
    if added:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        for argv in (["apt-get", "update", "-q"],
                     ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]):
            result = subprocess.run(argv, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise StackError(f"{' '.join(argv[:2])} failed: {result.stderr.strip()[-300:]}")
    finally:
        if added:
            policy.unlink()


# ---------------------------------------------------------------- host: daemon

class Daemon:
    """A dockerd of our own: no iptables, no default bridge (compose's own
    networks and 127.0.0.1 port publishing still work), its own socket and state."""

    def __init__(self, settings: Settings):
        self.dir = settings.run_dir / "docker"
        self.socket = self.dir / "docker.sock"
        self.pid_file = self.dir / "dockerd.pid"
        self.log = self.dir / "dockerd.log"
        self.exec_root = self.dir / "exec"
        # Images and the layer cache outlive `make clean` and fresh clones, like ~/.m2.
        self.data_root = Path(settings["EXCHANGE_CACHE_DIR"]) / "docker"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid if b"dockerd" in cmdline and str(self.socket).encode() in cmdline else None

    def answers(self) -> bool:
        return subprocess.run(["docker", "version"], env=self.env, capture_output=True,
                              timeout=30).returncode == 0

    def _others_on_data_root(self) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if argv and argv[0].endswith(b"dockerd") and \
                        f"--data-root={self.data_root}".encode() in argv:
                    found.append(int(entry.name))
        return found

    def start(self) -> str:
        """Start (or reuse) the daemon; returns the storage driver in use."""
        if self.pid() is None:
            if self._others_on_data_root():
                raise StackError(f"another dockerd uses {self.data_root}: stop it first")
            self.exec_root.mkdir(parents=True, exist_ok=True)
            self.data_root.mkdir(parents=True, exist_ok=True)
            for driver in ("overlay2", "vfs"):
                if self._launch(driver):
                    if driver != "overlay2":
                        say(f"overlay2 does not work on this filesystem: using {driver} (slower, bigger)")
                    break
            else:
                raise StackError(f"dockerd did not start; see {self.log}")
        info = subprocess.run(["docker", "info", "--format", "{{.Driver}}"], env=self.env,
                              capture_output=True, text=True, timeout=30)
        return info.stdout.strip()

    def _launch(self, driver: str) -> bool:
        argv = ["dockerd", f"--storage-driver={driver}", "--iptables=false", "--ip-forward=false",
                "--bridge=none", f"--host=unix://{self.socket}", f"--pidfile={self.pid_file}",
                f"--data-root={self.data_root}", f"--exec-root={self.exec_root}"]
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            if self.socket.exists() and self.answers():
                return True
            time.sleep(0.5)
        proc.kill()
        return False

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            self.unmount_leftovers()
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        self.unmount_leftovers()
        return True

    def mounts(self) -> list[str]:
        """Mount points under this daemon's state directory (dockerd bind-mounts
        its network namespaces under exec/netns; one outlived a stopped
        daemon in a CI rehearsal)."""
        try:
            lines = Path("/proc/self/mounts").read_text().splitlines()
        except OSError:
            return []
        prefix = f"{self.dir.resolve()}/"
        return [fields[1] for fields in (line.split() for line in lines)
                if len(fields) > 1 and fields[1].startswith(prefix)]

    def unmount_leftovers(self) -> None:
        """Lazily unmount what a stopped daemon left mounted (deepest first)."""
        for point in sorted(self.mounts(), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)

    def leftovers(self) -> list[str]:
        """Processes still running from this daemon's state (containerd, shims)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if str(self.dir) in cmdline or f"--data-root={self.data_root}" in cmdline:
                    found.append(f"{entry.name} {cmdline[:120]}")
        return found

    def docker(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        result = subprocess.run(["docker", *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise StackError(f"docker {' '.join(args[:3])}: {result.stderr.strip()[-500:]}")
        return result.stdout

    def compose(self, *args: str, timeout: float = 1800, capture: bool = False) -> str:
        argv = ["docker-compose", "--ansi", "never", "-p", PROJECT, "-f", str(COMPOSE_FILE), *args]
        result = subprocess.run(argv, env=self.env, cwd=REPO_ROOT, timeout=timeout, text=True,
                                capture_output=True)
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip()[-3000:]
            raise StackError(f"docker-compose {' '.join(args)} failed:\n{tail}")
        if not capture:
            with open(self.dir / "compose.log", "a") as out:
                out.write(result.stdout + result.stderr)
            return result.stdout + result.stderr
        return result.stdout


# ---------------------------------------------------------------- host: base image

def debian_mirror() -> str:
    """The Debian mirror apt uses here (deb822 .sources files or sources.list)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and "bookworm" in suites.group(1).split():
                return uris.group(1)
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]:
        if path.exists():
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb" and "bookworm" in parts:
                    return next(p for p in parts[1:] if "://" in p)
    raise StackError("no Debian bookworm mirror found in /etc/apt/sources.list*")


def base_image(daemon: Daemon) -> None:
    """debian:bookworm-slim, made locally when absent: no registry to pull it from."""
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], env=daemon.env,
                      capture_output=True).returncode == 0:
        return
    mirror = debian_mirror()
    rootfs = daemon.dir / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    say(f"making {BASE_IMAGE} with debootstrap from {mirror}")
    result = subprocess.run(["debootstrap", "--variant=minbase", "--include=ca-certificates",
                             "bookworm", str(rootfs), mirror],
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise StackError(f"debootstrap failed: {result.stderr.strip()[-500:]}")
    # The builds reach the registries through this machine's network, so they
    # trust the certificate authorities the machine trusts (local ones included).
    local_cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    for path in local_cas:
        shutil.copy(path, rootfs / "usr/local/share/ca-certificates" / path.name)
    if local_cas:
        subprocess.run(["chroot", str(rootfs), "update-ca-certificates"], check=True,
                       capture_output=True)
    for cache in (rootfs / "var/cache/apt/archives", rootfs / "var/lib/apt/lists"):
        for path in cache.glob("*"):
            if path.is_file():
                path.unlink()
    # The image's apt reads the same sources as the host's, with the same
    # date checks (a snapshot mirror's Release files may be past Valid-Until).
    apt = rootfs / "etc" / "apt"
    for path in Path("/etc/apt/sources.list.d").glob("*.sources"):
        shutil.copy(path, apt / "sources.list.d" / path.name)
    if any((apt / "sources.list.d").glob("*.sources")):
        (apt / "sources.list").unlink(missing_ok=True)
    dump = subprocess.run(["apt-config", "dump"], capture_output=True, text=True).stdout
    checks = [line for line in dump.splitlines()
              if line.startswith(("Acquire::Check-Valid-Until", "Acquire::Check-Date"))]
    if checks:
        (apt / "apt.conf.d" / "50host-checks").write_text("\n".join(checks) + "\n")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(["docker", "import", "-", BASE_IMAGE], stdin=tar.stdout,
                              env=daemon.env, capture_output=True, text=True, timeout=600)
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)
    if imported.returncode != 0:
        raise StackError(f"docker import failed: {imported.stderr.strip()[-300:]}")


# ---------------------------------------------------------------- inside the app image

def _app(settings: Settings, name: str):
    from stack import apps
    for app in apps.apps(settings):
        if app.name == name:
            return app
    raise StackError(f"no process {name!r} in stack/apps.py")


def run_app(settings: Settings, name: str) -> None:
    """Exec one of stack/apps.py's processes as `make up` runs it: each logs in
    to RabbitMQ and PostgreSQL as its own principal (the compose broker loads
    the same users from stack/rabbitmq_access.py's definitions at boot; the
    `prepare` container makes the PostgreSQL roles)."""
    from stack import apps
    apps.nameko_config_file(settings)
    app = _app(settings, name)
    os.execvpe(app.process.argv[0], app.process.argv, {**os.environ, **app.process.env})


def wait_for_services(settings: Settings, timeout: float = 300) -> None:
    from stack import apps
    deadline = time.monotonic() + timeout
    for name in apps.service_names():
        app = _app(settings, f"service:{name}")
        while not (probe := app.probe(settings)).up:
            if time.monotonic() > deadline:
                raise StackError(f"{app.name} not healthy after {timeout:.0f}s ({probe.detail})")
            time.sleep(1)


def prepare(settings: Settings) -> None:
    """stack/prepare.py's steps. RabbitMQ's is the exception: rabbitmqctl works
    only on the server's own node; the rendered rabbitmq.conf already makes the
    vhost, user and permissions the services use (the _test vhost is for tests,
    which run against `make up`'s stack)."""
    from stack import prepare as steps
    for name, step in steps.STEPS.items():
        if name != "rabbitmq":
            for line in step(settings):
                say(f"{name}: {line}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__)
        return 2
    command, args = argv[0], argv[1:]
    settings = load_settings()
    try:
        if command == "install":
            install()
        elif command == "daemon":
            install()
            say(f"dockerd up ({Daemon(settings).start()}), DOCKER_HOST=unix://{Daemon(settings).socket}")
        elif command == "base":
            base_image(Daemon(settings))
        elif command in ("build", "up", "down", "ps", "logs", "config"):
            extra = {"up": ["up", "-d"], "down": ["down", "-v", "--remove-orphans"]}.get(command, [command])
            print(Daemon(settings).compose(*extra, *args, capture=True), end="")
        elif command == "stop":
            say("dockerd stopped" if Daemon(settings).stop() else "dockerd was not running")
        elif command == "run":
            run_app(settings, args[0])
        elif command == "probe":
            probe = _app(settings, args[0]).probe(settings)
            return 0 if probe.up else 1
        elif command == "prepare":
            prepare(settings)
        elif command == "seed":
            wait_for_services(settings)
            import logging
            logging.getLogger("amqp").setLevel(logging.ERROR)
            from stack.seed import seed
            for line in seed(settings):
                say(f"demo: {line}")
        else:
            print(__doc__)
            return 2
    except StackError as problem:
        print(f"[compose] ERROR: {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
