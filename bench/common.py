"""Pieces the benchmarks share: the statistics they print (pure), the CPU
each process spent (read from /proc), starting Nameko service processes
in a private namespace, and funding a bench's traders."""
from __future__ import annotations

import math
import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ statistics (pure)


def percentile(values, q):
    """The nearest-rank ``q`` quantile (0 <= q <= 1) of ``values``; NaN when empty."""
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def poisson_arrivals(rate: float, seconds: float, rng: random.Random) -> list[float]:
    """Arrival offsets in [0, seconds) of a Poisson process of ``rate`` per
    second: exponential gaps, so an open-loop client sends at these times
    whatever the answers' latency (no coordinated omission)."""
    if rate <= 0 or seconds <= 0:
        return []
    arrivals, t = [], rng.expovariate(rate)
    while t < seconds:
        arrivals.append(t)
        t += rng.expovariate(rate)
    return arrivals


def size_histogram(sizes) -> list[tuple[str, int, int]]:
    """``(bucket, batches, items)`` rows over power-of-two buckets of batch
    size (1, 2, 3-4, 5-8, ...), smallest first; empty buckets left out."""
    buckets: dict[int, list[int]] = {}
    for size in sizes:
        if size < 1:
            continue
        k = 0 if size == 1 else math.ceil(math.log2(size))
        row = buckets.setdefault(k, [0, 0])
        row[0] += 1
        row[1] += size
    rows = []
    for k in sorted(buckets):
        low, high = (1, 1) if k == 0 else (2 ** (k - 1) + 1, 2 ** k)
        rows.append((str(low) if low == high else f"{low}-{high}", *buckets[k]))
    return rows


# ------------------------------------------------------------------ CPU from /proc

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid) -> float:
    """User + system CPU seconds of one process so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0


def _server_pids(names: tuple[str, ...]) -> list[int]:
    """The processes named ``names`` in this process's network namespace:
    the stack's servers, not the copies other work runs in namespaces of its
    own (the zone clusters run their own RabbitMQ and PostgreSQL)."""
    own = os.readlink("/proc/self/ns/net")
    own_sockets = _listening("self")
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() in names and _same_net(entry, own, own_sockets):
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def _same_net(pid: str, own: str, own_sockets: set) -> bool:
    """Whether ``pid`` is in this process's network namespace. Its
    ``ns/net`` link needs ptrace access: root without CAP_SYS_PTRACE (a
    container's default) is refused it for another user's process (the
    servers run as the stack's user), so the namespace's listening sockets
    decide then (socket inodes are unique: one in common, the same
    namespace)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net") == own
    except PermissionError:
        return bool(_listening(pid) & own_sockets)


def _listening(pid: str) -> set:
    """Inodes of the listening TCP sockets of ``pid``'s network namespace."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as lines:
                for line in list(lines)[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and fields[9] != "0":
                        inodes.add(fields[9])
        except OSError:
            pass        # no IPv6 in this kernel, or the process is gone
    return inodes


MACHINE = "machine, busy"
KERNEL = "kernel (system+irq, all processes)"
REST = "rest of the machine (idle stack, other work)"


def cpu_snapshot(pids_by_role: dict[str, list[int]]) -> dict:
    """CPU seconds used so far, by role and process (``{role: {pid:
    seconds}}``): the given processes, PostgreSQL and RabbitMQ (every process
    of theirs in this network namespace); and as plain seconds the kernel (system, irq
    and softirq time of the whole machine, which also contains the processes'
    own system time) and the machine's busy time (/proc/stat). Kept by pid so
    that a process restarted between two snapshots counts from its start
    instead of making the difference negative."""
    roles = {**pids_by_role, "postgresql": _server_pids(("postgres",)),
             "rabbitmq": _server_pids(("beam.smp", "erl_child_setup", "epmd"))}
    snapshot: dict = {role: {pid: cpu_seconds(pid) for pid in pids if pid}
                      for role, pids in roles.items()}
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    snapshot[KERNEL] = sum(ticks[2:3] + ticks[5:7]) / CLOCK_TICKS
    snapshot[MACHINE] = (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLOCK_TICKS
    return snapshot


def cpu_delta(before: dict, after: dict) -> dict:
    """Seconds per role between two snapshots (a process's time since the
    first snapshot, or since its start when it started in between), plus the
    busy time in no named process."""
    delta = {}
    for role, now in after.items():
        if isinstance(now, dict):
            then = before.get(role, {})
            delta[role] = sum(max(0.0, secs - then.get(pid, 0.0)) for pid, secs in now.items())
        else:
            delta[role] = now - before.get(role, 0.0)
    named = sum(v for role, v in delta.items() if role not in (MACHINE, KERNEL))
    delta[REST] = max(0.0, delta[MACHINE] - named)
    return delta


def cpu_per_call(before: dict, after: dict, calls: int) -> str:
    return ", ".join(f"{role} {seconds / calls * 1e6:,.0f}"
                     for role, seconds in cpu_delta(before, after).items() if seconds > 0)


# ------------------------------------------------------------------ service processes

def start_services(settings, run: Path, config_file: Path, modules: dict[str, str],
                   env: dict | None = None) -> dict:
    """``{name: Process}``, each ``nameko run`` of ``modules[name]`` with its
    log and pid file under ``run``, started."""
    from stack.proc import Process
    env = {**settings.values, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
    procs = {}
    for name, module in modules.items():
        argv = ([sys.executable, "-m", module] if module == "gateway" else
                [sys.executable, "-m", "nameko", "run", "--config", str(config_file), module])
        procs[name] = Process(name, argv, run / f"{name}.log", run / f"{name}.pid", env=env,
                              cwd=REPO)
        procs[name].start()
    return procs


# ------------------------------------------------------------------ funding

def credit_deposit(rpc, user_id: str, asset: str, amount: str) -> None:
    """A confirmed deposit of ``amount`` ``asset`` to ``user_id`` through
    wallets (its deposit address, a made-up transaction id: 0x and 64 hex
    digits for USDT, 64 hex digits otherwise)."""
    address = rpc.wallets.deposit_address(user_id, asset)["address"]
    txid = os.urandom(32).hex()
    rpc.wallets.credit_deposit(asset, address, amount, "0x" + txid if asset == "USDT" else txid,
                               1000)
