"""The local stack: `python -m stack up|down|status|logs|clean`.

Run through the Makefile, after scripts/bootstrap.sh has installed the Debian
packages and the virtualenv. Problems the operator must fix are printed as one
line (exit 2), never as a traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import pwd
import shutil
import subprocess
import sys
import time
import warnings

from services.common import health
from services.common.config import Settings, load_settings
from services.common.migrations import MigrationError
from stack import apps as app_defs
from stack import monitoring
from stack import prepare
from stack.proc import StackError
from stack.servers import SERVERS, Server, run_dir


# Nameko runs on eventlet by design (see docs/eventlet.md); its banner is noise here.
warnings.filterwarnings("ignore", message="\nEventlet is deprecated")
# Replies racing a closing channel are harmless; py-amqp logs each as a warning.
logging.getLogger("amqp").setLevel(logging.ERROR)


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


# ---------------------------------------------------------------- checks

def ensure_system_user(settings: Settings) -> None:
    if os.geteuid() != 0:
        return
    name = settings["EXCHANGE_SYSTEM_USER"]
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", name], check=True)
        say(f"created system user {name}")
    probe = subprocess.run(["test", "-x", str(run_dir(settings, "logs"))], user=name)
    if probe.returncode != 0:
        raise StackError(f"the system user {name} cannot reach {settings.run_dir}: make its "
                         "parent directories traversable (chmod o+x) or set EXCHANGE_RUN_DIR")


def check_ports_free(settings: Settings, server: Server) -> None:
    for key in server.port_keys:
        port = settings.int(key)
        if health.port_open(settings.host, port):
            raise StackError(f"port {port} for {server.name} is already taken by another "
                             f"process: stop it or set {key} to a free port (config/defaults.env)")


def wait_ready(settings: Settings, server: Server) -> health.Probe:
    deadline = time.monotonic() + server.ready_timeout
    process = server.process(settings)
    while True:
        probe = server.is_ready(settings)
        if probe.up:
            return probe
        if process.running_pid() is None:
            raise StackError(f"{server.name} exited during start-up; see {process.log}")
        if time.monotonic() > deadline:
            raise StackError(f"{server.name} not ready after {server.ready_timeout:.0f}s "
                             f"({probe.detail}); see {process.log}")
        time.sleep(0.5)


# ---------------------------------------------------------------- commands

def up(settings: Settings, with_apps: bool) -> int:
    started_at = time.monotonic()
    for sub in ("logs", "pids", "home"):
        run_dir(settings, sub).mkdir(parents=True, exist_ok=True)
    ensure_system_user(settings)
    if os.geteuid() == 0:
        shutil.chown(run_dir(settings, "home"), settings["EXCHANGE_SYSTEM_USER"])

    to_start = []
    for server in SERVERS:
        server.install(settings)
        if server.process(settings).running_pid() is None:
            check_ports_free(settings, server)
            to_start.append(server)
        server.configure(settings)
    for server in to_start:
        for companion in server.companions:
            proc = companion(settings)
            if proc.running_pid() is None:
                proc.start()
        server.process(settings).start()
        say(f"started {server.name}")

    # All were started above, so waiting for them in turn costs no extra time.
    for server in SERVERS:
        say(f"{server.name} ready ({wait_ready(settings, server).detail})")

    for name, step in prepare.STEPS.items():
        for line in step(settings):
            say(f"{name}: {line}")

    if with_apps:
        app_defs.nameko_config_file(settings)
        apps = app_defs.apps(settings)
        for app in apps:
            if app.process.running_pid() is None:
                app.process.start()
                say(f"started {app.name}")
        for app in apps:
            deadline = time.monotonic() + 60
            while not (probe := app.probe(settings)).up:
                if app.process.running_pid() is None or time.monotonic() > deadline:
                    raise StackError(f"{app.name} did not become healthy ({probe.detail}); "
                                     f"see {app.process.log}")
                time.sleep(0.5)
        names = {app.name for app in apps}
        if {"service:users", "service:wallets", "service:orders", "service:matching"} <= names:
            from stack.seed import seed
            for line in seed(settings):
                say(f"demo: {line}")
    say(f"up in {time.monotonic() - started_at:.0f}s")
    return status(settings)


def down(settings: Settings) -> int:
    for app in reversed(app_defs.apps(settings)):
        if app.process.stop(timeout=15):
            say(f"stopped {app.name}")
    for server in reversed(SERVERS):
        if server.process(settings).stop(timeout=60):
            say(f"stopped {server.name}")
        for companion in server.companions:
            if companion(settings).stop(timeout=10):
                say(f"stopped {companion(settings).name}")
    return 0


def addresses(settings: Settings) -> dict[str, str]:
    host = settings.host
    return {
        "postgresql": f"postgresql://{host}:{settings['EXCHANGE_POSTGRES_PORT']}/"
                      f"{settings['EXCHANGE_POSTGRES_DB']}",
        "rabbitmq": f"amqp://{host}:{settings['EXCHANGE_RABBITMQ_PORT']}/"
                    f"{settings['EXCHANGE_RABBITMQ_VHOST']}",
        "memcached": f"{host}:{settings['EXCHANGE_MEMCACHED_PORT']}",
        "cassandra": f"{host}:{settings['EXCHANGE_CASSANDRA_PORT']} "
                     f"(keyspace {settings['EXCHANGE_CASSANDRA_KEYSPACE']})",
        "keycloak": f"{settings.keycloak_url}/admin (realm {settings['EXCHANGE_KEYCLOAK_REALM']})",
        **monitoring.addresses(settings),
    }


def status(settings: Settings) -> int:
    rows = []
    addr = addresses(settings)
    for server in SERVERS:
        pid = server.process(settings).running_pid()
        probe = server.probe(settings)
        rows.append((server.name, pid, probe, addr[server.name]))
    for app in app_defs.apps(settings):
        pid = app.process.running_pid()
        rows.append((app.name, pid, app.probe(settings), app.address))
    print(f"{'component':<22} {'state':<6} {'pid':>8} {'latency':>10}  address / detail")
    all_up = True
    for name, pid, probe, address in rows:
        up_ = probe.up and pid is not None
        all_up &= up_
        state = "up" if up_ else "DOWN"
        detail = probe.detail if up_ else (probe.detail or "not running")
        if pid is None and probe.up:
            detail = "answers, but is not a process this stack started"
        print(f"{name:<22} {state:<6} {pid or '-':>8} {probe.latency_ms:>8.1f}ms  {address}")
        if not up_ or detail:
            print(f"{'':<50}{detail[:110]}")
    return 0 if all_up else 1


def logs(settings: Settings, order: str | None = None) -> int:
    if order:
        from services.common import logs as json_logs
        lines = json_logs.follow(order, run_dir(settings, "logs"))
        for line in lines:
            print(json_logs.render(line))
        return 0 if lines else 1
    files = sorted(str(p) for p in run_dir(settings, "logs").glob("*.log"))
    if not files:
        say("no logs yet: run `make up`")
        return 1
    os.execvp("tail", ["tail", "-n", "20", "-F", *files])


def clean(settings: Settings) -> int:
    down(settings)
    shutil.rmtree(settings.run_dir, ignore_errors=True)
    say(f"removed {settings.run_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stack")
    parser.add_argument("command", choices=["up", "servers", "down", "status", "logs", "clean"])
    parser.add_argument("--order", help="logs: one order's JSON lines from every process, in time order")
    args = parser.parse_args(argv)
    settings = load_settings()
    try:
        if args.command == "up":
            return up(settings, with_apps=True)
        if args.command == "servers":
            return up(settings, with_apps=False)
        if args.command == "logs":
            return logs(settings, args.order)
        return {"down": down, "status": status, "clean": clean}[args.command](settings)
    except (StackError, MigrationError) as problem:
        print(f"[stack] ERROR: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
