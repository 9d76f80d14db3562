"""The stack starts the live push's latency path with a larger CPU share
(stack/proc.py CPU_NICE, docs/operations.md "CPU share of the latency
path"): the niceness lands on the started process's own session (its
autogroup), not on the caller's."""
import os
import sys
from pathlib import Path

import pytest

from stack import proc


def autogroup_nice(pid: int) -> int | None:
    """The niceness of ``pid``'s session, or None where the kernel shows none:
    "/autogroup-123 nice -5" under autogroup scheduling; an empty file where the
    process's task group is a cgroup's (a container), not an autogroup."""
    words = Path(f"/proc/{pid}/autogroup").read_text().split() \
        if Path(f"/proc/{pid}/autogroup").exists() else []
    return int(words[-1]) if words[-2:-1] == ["nice"] else None


needs_lowering = pytest.mark.skipif(
    not proc.can_lower_niceness(-1), reason="a niceness below 0 needs root with CAP_SYS_NICE")
needs_autogroup = pytest.mark.skipif(
    autogroup_nice(os.getpid()) is None,
    reason="the session's share needs autogroup scheduling (this process is in a cgroup's group)")


@pytest.fixture
def started(tmp_path, monkeypatch):
    """The pid of a process the stack started as "cpu-share-test" at -5, and
    the caller's own (process niceness, session niceness) read before it."""
    monkeypatch.setenv("EXCHANGE_CPU_NICE", "cpu-share-test=-5, other=3")
    ours = (os.getpriority(os.PRIO_PROCESS, 0), autogroup_nice(os.getpid()))
    process = proc.Process(name="cpu-share-test",
                           argv=[sys.executable, "-c", "import time; time.sleep(60)"],
                           log=tmp_path / "test.log", pid_file=tmp_path / "test.pid")
    pid = process.start()
    try:
        yield pid, ours
    finally:
        assert process.stop(timeout=10)


@needs_lowering
def test_a_started_process_gets_its_niceness_and_the_caller_keeps_its_own(started):
    pid, (our_nice, _) = started
    assert os.getpriority(os.PRIO_PROCESS, pid) == -5
    assert os.getpriority(os.PRIO_PROCESS, 0) == our_nice


@needs_lowering
@needs_autogroup
def test_a_started_process_session_gets_its_niceness_and_the_callers_keeps_its_own(
        started):
    pid, (_, our_session_nice) = started
    assert autogroup_nice(pid) == -5
    assert autogroup_nice(os.getpid()) == our_session_nice


def test_the_table_without_an_override(monkeypatch):
    monkeypatch.delenv("EXCHANGE_CPU_NICE", raising=False)
    assert proc.CPU_NICE.get("gateway", 0) < 0
    assert proc.cpu_nice("service-orders") == 0


def test_an_empty_override_starts_everything_at_zero(monkeypatch):
    monkeypatch.setenv("EXCHANGE_CPU_NICE", "")
    assert proc.cpu_nice("gateway") == 0


def test_a_malformed_override_is_the_operators_error(monkeypatch):
    monkeypatch.setenv("EXCHANGE_CPU_NICE", "gateway=fast")
    with pytest.raises(proc.StackError, match="EXCHANGE_CPU_NICE"):
        proc.cpu_nice("gateway")
