"""Render one server of the local stack into an image (a build stage of docker/Dockerfile).

    python3 docker/render.py SERVER
    python3 docker/render.py rabbitmq-definitions

Runs the very functions `make up` runs for SERVER (stack/servers.py: install,
configure, the start command) with the container's settings: the run
directory /var/lib/exchange and EXCHANGE_BIND_HOST=0.0.0.0 (every interface of
the container's own network namespace; the ports are published on 127.0.0.1
only). So the compose stack has no second copy of any server's configuration.

Writes the configuration under the run directory, and /opt/exchange/start: a
shell script that starts the companions (epmd) and then execs the server with
the environment and working directory `make up` gives it. Needs only Python's
standard library, so the runtime image carries no Python.

``rabbitmq-definitions`` writes only RabbitMQ's definitions file (every
principal's user and permissions, stack/rabbitmq_access.py), over the one
``rabbitmq`` rendered: it needs services/*/service.py (the principals are the
services found there), which the servers' render stages do not get.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.config import load_settings, service_names  # noqa: E402
from stack import rabbitmq_access  # noqa: E402
from stack.servers import SERVERS, keycloak_home, run_dir  # noqa: E402

START = Path("/opt/exchange/start")
# Keycloak keeps its H2 database under its versioned home; the compose file
# mounts a named volume at this fixed path instead.
KEYCLOAK_DATA = Path("/var/lib/exchange/keycloak-data")


def command(process) -> list[str]:
    exports = [f"export {key}={shlex.quote(value)}" for key, value in sorted(process.env.items())]
    cwd = [f"cd {shlex.quote(str(process.cwd))}"] if process.cwd else []
    return [*exports, *cwd]


def render(name: str) -> None:
    settings = load_settings()
    server = next(s for s in SERVERS if s.name == name)
    for sub in ("logs", "pids", "home"):
        run_dir(settings, sub).mkdir(parents=True, exist_ok=True)
    server.install(settings)
    server.configure(settings)
    lines = ["#!/bin/sh", f"# {name}: rendered by docker/render.py from stack/servers.py", "set -e"]
    for companion in server.companions:
        proc = companion(settings)
        lines += ["(", *("  " + line for line in command(proc)),
                  f"  exec {shlex.join(proc.argv)}", ") &"]
    proc = server.process(settings)
    lines += command(proc)
    lines.append(f"exec {shlex.join(proc.argv)}")
    START.parent.mkdir(parents=True, exist_ok=True)
    START.write_text("\n".join(lines) + "\n")
    START.chmod(0o755)
    if name == "keycloak":
        data = keycloak_home(settings) / "data"
        data.rename(KEYCLOAK_DATA)
        data.symlink_to(KEYCLOAK_DATA)


def rabbitmq_definitions() -> None:
    settings = load_settings()
    path = run_dir(settings, "rabbitmq", "definitions.json")
    if not path.exists():
        raise SystemExit(f"{path}: render rabbitmq first")
    if not service_names():
        raise SystemExit("no services/*/service.py: copy services/ into this stage")
    rabbitmq_access.write_definitions(settings, path)
    principals = [user["name"] for user in rabbitmq_access.definitions(settings)["users"]]
    print(f"rabbitmq definitions: users {', '.join(principals)}")


if __name__ == "__main__":
    if sys.argv[1] == "rabbitmq-definitions":
        rabbitmq_definitions()
    else:
        render(sys.argv[1])
