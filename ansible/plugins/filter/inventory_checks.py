"""Filter `exchange_inventory_problems`: what is missing or wrong in an inventory.

site.yml's first play stops with the first problem, as one line naming the
host and the value, before anything is deployed. Pure: unit-tested without
Ansible (tests/unit/ansible/test_inventory_checks.py).
"""
from __future__ import annotations

import re

_SIZE = re.compile(r"^([1-9][0-9]*)([MmGg])$")
# The inventory variables that size a JVM heap or a server's memory, and the
# group whose hosts run that server.
MEMORY_VARS = {"cassandra_heap": "cassandra", "keycloak_heap": "keycloak"}


def size_mb(value: object) -> int:
    """'512M' -> 512, '2G' -> 2048; anything else raises ValueError."""
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size like 512M or 2G")
    number, unit = int(match.group(1)), match.group(2).upper()
    return number * (1024 if unit == "G" else 1)


def inventory_problems(hostvars: dict, hosts: list[str], groups: dict) -> list[str]:
    problems: list[str] = []
    addresses: dict[str, str] = {}
    for host in hosts:
        facts = hostvars[host]
        zones = facts.get("exchange_zones") or []
        zone = facts.get("exchange_zone")
        if zone is None:
            problems.append(f"{host}: exchange_zone is not set (one of {', '.join(zones)})")
        elif zone not in zones:
            problems.append(f"{host}: unknown zone {zone!r} (exchange_zones: {', '.join(zones)})")
        elif zone not in groups or host not in groups[zone]:
            problems.append(f"{host}: exchange_zone is {zone!r} but the host is not in group {zone}")
        address = facts.get("exchange_address")
        if not address:
            problems.append(f"{host}: exchange_address is not set")
        elif address in addresses:
            problems.append(f"{host}: duplicate address {address} (also {addresses[address]})")
        else:
            addresses[address] = host
        memory = facts.get("exchange_host_memory_mb")
        try:
            memory_mb = int(memory)
        except (TypeError, ValueError):
            problems.append(f"{host}: exchange_host_memory_mb is not a number of MiB: {memory!r}")
            continue
        total = 0
        for var, group in MEMORY_VARS.items():
            if var not in facts or host not in groups.get(group, []):
                continue
            try:
                mb = size_mb(facts[var])
            except ValueError as wrong:
                problems.append(f"{host}: {var}: {wrong}")
                continue
            if mb > memory_mb:
                problems.append(f"{host}: {var} {facts[var]} is larger than the host "
                                f"({memory_mb} MiB)")
            total += mb
        if total > memory_mb:
            problems.append(f"{host}: heaps and caches add up to {total} MiB, more than the host "
                            f"({memory_mb} MiB)")
    return problems


class FilterModule:
    def filters(self):
        return {"exchange_inventory_problems": inventory_problems}
