"""Connection plugin `netns`: run a host's tasks inside its network namespace.

The three-zones inventory on one machine has one network namespace per zone
host (scripts/zones.sh). A task on such a host runs as `ip netns exec <name>
/bin/sh -c <command>`: it sees the zone's interfaces and addresses only, as it
would on its own machine, and anything it starts (supervisord and everything
under it) stays in that namespace. Files are copied with the local connection:
the hosts share the machine's filesystem, each keeps its data under its own
directory (exchange_host_dir). On real machines the inventory says
`ansible_connection: ssh` instead and nothing else changes.
"""
from __future__ import annotations

DOCUMENTATION = """
    name: netns
    short_description: run tasks inside a Linux network namespace of this machine
    description:
        - Like the local connection, with every command run through C(ip netns exec).
    author: exchange
    options:
        netns_name:
            description: the network namespace (C(ip netns list)) the host lives in
            required: true
            vars:
                - name: ansible_netns_name
"""

import os
import shlex
import typing as t

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.connection.local import Connection as LocalConnection


class Connection(LocalConnection):
    transport = "netns"
    has_pipelining = True

    def _connect(self) -> LocalConnection:
        name = self.get_option("netns_name")
        if not os.path.exists(f"/run/netns/{name}"):
            raise AnsibleConnectionFailure(
                f"network namespace {name} does not exist: run `scripts/zones.sh up` first")
        return super()._connect()

    def exec_command(self, cmd: t.Any, in_data: bytes | None = None,
                     sudoable: bool = True) -> tuple[int, bytes, bytes]:
        name = self.get_option("netns_name")
        wrapped = f"ip netns exec {shlex.quote(name)} /bin/sh -c {shlex.quote(cmd)}"
        return super().exec_command(wrapped, in_data=in_data, sudoable=sudoable)
