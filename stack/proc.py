"""Start, find and stop the stack's processes by pid file.

A pid file holds the pid and the process start time (from /proc), so a pid
that the kernel has recycled for somebody else's process is never mistaken
for ours, and `make down` can only ever signal what `make up` started.
"""
from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class StackError(Exception):
    """A problem the operator must fix; printed as one line, no traceback."""


# The CPU share of the processes on a live push's path, by process name
# (docs/operations.md "CPU share of the latency path"). The kernel here
# schedules with autogroup (``/proc/sys/kernel/sched_autogroup_enabled``):
# the CPU is shared between sessions first, and every process below runs in
# a session of its own, so only a session's niceness (``/proc/<pid>/autogroup``)
# moves its share against the other processes'. A gateway woken by an engine
# batch then waits for a core less often behind the servers' and services'
# work (bench/README.md "Session 11 (helper P)": at 100 orders/s the trade ->
# client p99's median of 5 runs fell from 161 to 137 ms, RabbitMQ -> the
# gateway's consumer p99 from 55-82 to 19-26 ms). ``EXCHANGE_CPU_NICE`` overrides the
# table: ``name=nice`` pairs separated by commas; empty: every process at 0.
CPU_NICE = {"gateway": -5}


def cpu_nice(name: str) -> int:
    """The niceness ``name`` is started at (CPU_NICE, or EXCHANGE_CPU_NICE)."""
    spec = os.environ.get("EXCHANGE_CPU_NICE")
    if spec is None:
        return CPU_NICE.get(name, 0)
    table = {}
    for pair in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = pair.partition("=")
        try:
            table[key.strip()] = int(value)
        except ValueError:
            raise StackError(f"EXCHANGE_CPU_NICE: {pair!r} is not name=niceness") from None
    return table.get(name, 0)


def can_lower_niceness(nice: int) -> bool:
    """Whether this process may set a niceness of ``nice``: below its own
    needs CAP_SYS_NICE (or RLIMIT_NICE), which a non-root user and root in a
    container without the capability (Docker's default) both lack. Tried on
    this process and put back (raising it back needs no privilege)."""
    own = os.getpriority(os.PRIO_PROCESS, 0)
    if nice >= own:
        return True
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        return False
    os.setpriority(os.PRIO_PROCESS, 0, own)
    return True


def set_cpu_nice(pid: int, nice: int) -> bool:
    """Sets the niceness of ``pid``'s session (its autogroup) and of ``pid``
    itself; False where it cannot be set (below 0 needs root; a kernel
    without autogroup scheduling has only the process's own niceness)."""
    if nice == 0:
        return True
    done = False
    try:
        with open(f"/proc/{pid}/autogroup", "w") as autogroup:
            autogroup.write(str(nice))
        done = True
    except OSError:
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
        done = True
    except OSError:
        pass
    return done


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # Field 22 (starttime) counted after the parenthesised command name.
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return fields[19]


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    pid_file: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    user: str | None = None

    def running_pid(self) -> int | None:
        try:
            pid_text, started = self.pid_file.read_text().split()
            pid = int(pid_text)
        except (FileNotFoundError, ValueError):
            return None
        return pid if _start_time(pid) == started else None

    def start(self) -> int:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **self.env}
        kwargs = {}
        if self.user and os.geteuid() == 0:
            entry = pwd.getpwnam(self.user)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            env.setdefault("HOME", entry.pw_dir)
        with open(self.log, "ab") as log:
            try:
                proc = subprocess.Popen(
                    self.argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
            except OSError as exc:
                raise StackError(f"cannot start {self.name}: {exc}") from None
        started = None
        for _ in range(50):
            started = _start_time(proc.pid)
            if started:
                break
            time.sleep(0.01)
        if started is None:
            raise StackError(f"{self.name} exited at once; see {self.log}")
        # Popen returned after the exec, so the new session exists: this sets
        # its share, not ours. Where it cannot be set the process runs at 0.
        set_cpu_nice(proc.pid, cpu_nice(self.name))
        self.pid_file.write_text(f"{proc.pid} {started}\n")
        return proc.pid

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the process group we started; True when something was stopped."""
        pid = self.running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        # The whole session: servers fork helpers (erl_child_setup, epmd...).
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running_pid() is not None:
            time.sleep(0.1)
        if self.running_pid() is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(0.2)
        self._reap_group(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    @staticmethod
    def _reap_group(pgid: int) -> None:
        """Kill what is left in the session (children that outlived the leader)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
