#!/usr/bin/python
"""Ansible module `exchange_haproxy_server`: put one server of an HAProxy
backend into drain, maintenance or ready through HAProxy's runtime API (its
admin socket), and optionally wait until HAProxy's checks see it up."""
from __future__ import annotations

DOCUMENTATION = r"""
module: exchange_haproxy_server
short_description: set an HAProxy server's administrative state over the runtime API
options:
  socket:
    description: HAProxy's admin socket (C(stats socket ... level admin))
    type: path
    required: true
  backend:
    description: the backend
    type: str
    required: true
  server:
    description: the server's name in the backend
    type: str
    required: true
  state:
    description: C(drain) takes no new connections, C(maint) none at all, C(ready) serves again
    type: str
    required: true
    choices: [ready, drain, maint]
  wait_up:
    description: seconds to wait until the server's checks report it UP (0 = do not wait)
    type: int
    default: 0
author: exchange
"""

EXAMPLES = r"""
- name: Drain zone-a's gateway
  exchange_haproxy_server:
    socket: /srv/exchange/run/hosts/edge-lb/haproxy/admin.sock
    backend: gateways
    server: zone-a
    state: drain
"""

RETURN = r"""
status:
  description: the server's status column of C(show stat) at the end (UP, DRAIN, MAINT, DOWN, ...)
  returned: always
  type: str
"""

import socket
import time

from ansible.module_utils.basic import AnsibleModule


def ask(path: str, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(path)
        conn.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode()


def status(path: str, backend: str, server: str) -> str:
    lines = ask(path, "show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == backend and row.get("svname") == server:
            return row.get("status", "")
    raise ValueError(f"no server {server} in backend {backend}")


def main() -> None:
    module = AnsibleModule(argument_spec={
        "socket": {"type": "path", "required": True},
        "backend": {"type": "str", "required": True},
        "server": {"type": "str", "required": True},
        "state": {"type": "str", "required": True, "choices": ["ready", "drain", "maint"]},
        "wait_up": {"type": "int", "default": 0},
    }, supports_check_mode=True)
    p = module.params
    try:
        before = status(p["socket"], p["backend"], p["server"])
        wanted = {"drain": "DRAIN", "maint": "MAINT"}.get(p["state"])
        changed = (before != wanted) if wanted else before.startswith(("DRAIN", "MAINT"))
        if changed and not module.check_mode:
            answer = ask(p["socket"], f"set server {p['backend']}/{p['server']} state {p['state']}").strip()
            if answer:
                module.fail_json(msg=f"haproxy: {answer}")
        now = status(p["socket"], p["backend"], p["server"])
        deadline = time.monotonic() + p["wait_up"]
        while p["wait_up"] and not now.startswith("UP") and time.monotonic() < deadline:
            time.sleep(1)
            now = status(p["socket"], p["backend"], p["server"])
        if p["wait_up"] and not now.startswith("UP"):
            module.fail_json(msg=f"{p['backend']}/{p['server']} not up after {p['wait_up']} s: {now}")
        module.exit_json(changed=changed, status=now)
    except (OSError, ValueError) as problem:
        module.fail_json(msg=f"haproxy {p['socket']}: {problem}")


if __name__ == "__main__":
    main()
