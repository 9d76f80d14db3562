#!/usr/bin/python
"""Ansible module `exchange_stack`: one component of the exchange, rendered by
the very code `make up` runs (stack/servers.py, stack/apps.py, stack/prepare.py).

The roles hold no server configuration of their own: they hand this module the
host's settings (the EXCHANGE_* values of config/defaults.env with the
inventory's overrides) and it calls the stack's install and configure
functions with them, so the local stack, the compose images (docker/render.py)
and every Ansible host render one and the same configuration. It returns the
processes to supervise (argv, environment, directory, user) and leaves
starting them to supervisord (roles/supervisor).
"""
from __future__ import annotations

DOCUMENTATION = r"""
module: exchange_stack
short_description: render, probe or prepare one component of the exchange with stack/
description:
  - C(render) installs and configures a server of stack/servers.py (or writes the Nameko config
    of a service or the gateway) under the host's run directory and returns its processes.
  - C(describe) returns the processes of a server without installing or configuring it
    (Patroni starts PostgreSQL with the parameters stack/ gives it).
  - C(probe) answers whether the component is ready, C(prepare) runs its stack/prepare.py step.
  - C(migrate) (component C(rabbitmq)) deletes the queues an older version of our code declared
    with another type than this one declares (queues_of_the_wrong_type); it fails, naming the
    queue, while a process still consumes one.
options:
  action:
    description: what to do
    type: str
    required: true
    choices: [render, describe, probe, prepare, migrate]
  component:
    description: a server name of stack/servers.py, C(service:<name>), or C(gateway)
    type: str
    required: true
  repo:
    description: the exchange's checkout on the host
    type: path
    required: true
  settings:
    description: EXCHANGE_* overrides of config/defaults.env for this host
    type: dict
    default: {}
author: exchange
"""

EXAMPLES = r"""
- name: Render memcached
  exchange_stack:
    action: render
    component: memcached
    repo: /srv/exchange
    settings: {EXCHANGE_RUN_DIR: /var/lib/exchange, EXCHANGE_BIND_HOST: 169.254.100.2}
"""

RETURN = r"""
programs:
  description: the processes to supervise, companions first
  returned: action=render
  type: list
  elements: dict
deleted:
  description: the queues of the wrong type deleted, with the messages they held (action=migrate)
  returned: action=migrate
  type: list
  elements: dict
up:
  description: whether the component answered its probe (action=probe)
  returned: action=probe
  type: bool
"""

import hashlib
import os
import re
import sys
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

# Data the servers write themselves; a snapshot of the configuration skips it.
DATA_DIRS = {"data", "commitlog", "saved_caches", "hints", "cdc_raw", "mnesia", "logs",
             "log", "pids", "home", "opt", "sock", "json", "wal_archive", "base_backups"}
SMALL_FILE = 1 << 20


def config_snapshot(run_dir: Path) -> dict[str, str]:
    """Digest of every small file under run_dir outside the servers' data."""
    found: dict[str, str] = {}
    if not run_dir.exists():
        return found
    for root, dirs, files in os.walk(run_dir):
        dirs[:] = [d for d in dirs if d not in DATA_DIRS and not d.startswith("opt")]
        for name in files:
            path = Path(root, name)
            try:
                if path.is_symlink() or path.stat().st_size > SMALL_FILE:
                    continue
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                continue
    return found


def program(process, settings) -> dict:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8",
           **{k: str(v) for k, v in process.env.items()}}
    if process.user:
        import pwd
        env.setdefault("HOME", pwd.getpwnam(process.user).pw_dir)
    from stack.proc import cpu_nice
    # nice: the program's CPU niceness (stack/proc.py CPU_NICE; the gateway's
    # below 0), applied by the supervisor program's command.
    return {"name": process.name, "argv": [str(a) for a in process.argv], "env": env,
            "cwd": str(process.cwd or settings.run_dir), "user": process.user or "root",
            "log": str(process.log), "nice": cpu_nice(process.name)}


def find_server(name):
    from stack.servers import SERVERS
    for server in SERVERS:
        if server.name == name:
            return server
    return None


def render(settings, component: str) -> tuple[bool, list[dict]]:
    from stack.servers import run_dir
    for sub in ("logs", "pids", "home"):
        run_dir(settings, sub).mkdir(parents=True, exist_ok=True)
    before = config_snapshot(settings.run_dir)
    server = find_server(component)
    if server is not None:
        server.install(settings)
        server.configure(settings)
        processes = [companion(settings) for companion in server.companions]
        processes.append(server.process(settings))
    else:
        from stack import apps as app_defs
        app_defs.nameko_config_file(settings)
        processes = [app.process for app in app_defs.apps(settings) if app.name == component]
        if not processes:
            raise ValueError(f"unknown component {component!r}: not a server of stack/servers.py, "
                             "a service under services/ or the gateway")
    changed = config_snapshot(settings.run_dir) != before
    return changed, [program(p, settings) for p in processes]


def probe(settings, component: str) -> tuple[bool, str]:
    server = find_server(component)
    if server is not None:
        result = server.is_ready(settings)
    else:
        from stack import apps as app_defs
        result = next(app.probe(settings) for app in app_defs.apps(settings) if app.name == component)
    return result.up, result.detail


# The durable queues our code declares with the configured type
# (EXCHANGE_RABBITMQ_QUEUE_TYPE, services/common/queues.py): each service's
# RPC request queue and the queue of a service-pool event handler, Nameko's
# names. Reply queues (rpc.reply-...) and broadcast handlers' queues
# (auto-delete or exclusive, a suffix after the method) stay classic.
TYPED_QUEUE = re.compile(r"rpc-\w+|evt-.+--\w+\.\w+")
QUEUE_COLUMNS = ("name", "type", "durable", "auto_delete", "exclusive", "consumers", "messages")


def queues_of_the_wrong_type(listing: str, queue_type: str) -> list[dict]:
    """The queues of ``rabbitmqctl list_queues <QUEUE_COLUMNS>`` (tab-separated)
    that our code declares as ``queue_type`` but exist with another type. A
    newer version re-declaring one is refused (PRECONDITION_FAILED, its
    arguments differ) and, as Nameko consumes all of a service's queues on
    one connection, that service answers nothing (matching's market_updated
    queue, classic before 2026-12-05, quorum since)."""
    wrong = []
    for line in listing.splitlines():
        fields = line.split("\t")
        if len(fields) != len(QUEUE_COLUMNS):
            continue
        queue = dict(zip(QUEUE_COLUMNS, fields))
        if (TYPED_QUEUE.fullmatch(queue["name"]) and queue["durable"] == "true"
                and queue["auto_delete"] != "true" and queue["exclusive"] != "true"
                and queue["type"] != queue_type):
            wrong.append({"name": queue["name"], "type": queue["type"],
                          "consumers": int(queue["consumers"] or 0),
                          "messages": int(queue["messages"] or 0)})
    return wrong


def migrate_queues(settings, names: set[str] | None = None) -> list[dict]:
    """Delete every queue of the wrong type (queues_of_the_wrong_type) that no
    process consumes: the new version declares and binds it again when it
    starts (or on its next reconnection). Refuses while an older process
    still consumes one (it would declare it again with the old type): its
    service must be stopped in every zone first (docs/operations.md).
    ``names``: only these queues (a test's own, in a vhost others use)."""
    from stack import servers
    vhost = settings["EXCHANGE_RABBITMQ_VHOST"]
    listing = servers.rabbitmqctl(settings, "list_queues", "-p", vhost, "--no-table-headers", "--quiet",
                                  *QUEUE_COLUMNS)
    wrong = [q for q in queues_of_the_wrong_type(listing, settings.get("EXCHANGE_RABBITMQ_QUEUE_TYPE")
                                                 or "classic")
             if names is None or q["name"] in names]
    consumed = [q for q in wrong if q["consumers"]]
    if consumed:
        queue = consumed[0]
        raise RuntimeError(
            f"queue {queue['name']} is {queue['type']} and this version declares it "
            f"{settings.get('EXCHANGE_RABBITMQ_QUEUE_TYPE') or 'classic'}, and {queue['consumers']} "
            "process(es) of the older version consume it: stop that service in every zone, then run "
            "the play again (docs/operations.md, 'Rolling upgrade', one-off steps)")
    for queue in wrong:
        # --if-unused: a process that started consuming it since the listing
        # keeps it (the broker refuses; the play stops and is run again).
        servers.rabbitmqctl(settings, "delete_queue", "-p", vhost, queue["name"], "--if-unused")
    return wrong


def main() -> None:
    module = AnsibleModule(argument_spec={
        "action": {"type": "str", "required": True,
                   "choices": ["render", "describe", "probe", "prepare", "migrate"]},
        "component": {"type": "str", "required": True},
        "repo": {"type": "path", "required": True},
        "settings": {"type": "dict", "default": {}},
    }, supports_check_mode=True)
    params = module.params
    sys.path.insert(0, params["repo"])
    try:
        from services.common.config import load_settings
        settings = load_settings({k: str(v) for k, v in params["settings"].items()})
        action, component = params["action"], params["component"]
        if action == "probe":
            up, detail = probe(settings, component)
            module.exit_json(changed=False, up=up, detail=detail)
        if action == "describe":
            server = find_server(component)
            if server is None:
                raise ValueError(f"{component!r} is not a server of stack/servers.py")
            processes = [c(settings) for c in server.companions] + [server.process(settings)]
            module.exit_json(changed=False, programs=[program(p, settings) for p in processes])
        if module.check_mode:
            module.exit_json(changed=False)
        if action == "render":
            changed, programs = render(settings, component)
            module.exit_json(changed=changed, programs=programs)
        if action == "migrate":
            if component != "rabbitmq":
                raise ValueError("migrate knows the component rabbitmq only")
            deleted = migrate_queues(settings)
            module.exit_json(changed=bool(deleted), deleted=deleted)
        from stack import prepare
        done = prepare.STEPS[component](settings)
        module.exit_json(changed=bool(done), done=done)
    except Exception as problem:  # one line for the operator, the play stops
        module.fail_json(msg=f"{params['component']}: {type(problem).__name__}: {problem}")


if __name__ == "__main__":
    main()
