"""The stack starts the live push's latency path with a larger CPU share
(stack/proc.py CPU_NICE, docs/operations.md "CPU share of the latency
path"): the niceness lands on the started process's own session (its
autogroup), not on the caller's."""
import os
import sys
from pathlib import Path

import pytest

from stack import proc


def autogroup_nice(pid: int) -> int:
    # "/autogroup-123 nice -5"
    return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])


needs_root_and_autogroup = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/proc/self/autogroup").exists(),
    reason="a niceness below 0 needs root; the session's share needs autogroup scheduling")


@needs_root_and_autogroup
def test_a_started_process_session_gets_its_niceness_and_the_callers_keeps_its_own(
        tmp_path, monkeypatch):
    monkeypatch.setenv("EXCHANGE_CPU_NICE", "cpu-share-test=-5, other=3")
    ours = autogroup_nice(os.getpid())
    process = proc.Process(name="cpu-share-test",
                           argv=[sys.executable, "-c", "import time; time.sleep(60)"],
                           log=tmp_path / "test.log", pid_file=tmp_path / "test.pid")
    pid = process.start()
    try:
        assert autogroup_nice(pid) == -5
        assert os.getpriority(os.PRIO_PROCESS, pid) == -5
        assert autogroup_nice(os.getpid()) == ours
    finally:
        assert process.stop(timeout=10)


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
