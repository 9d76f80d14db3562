"""Same-window A/B of the wallets settlement bench: an older commit against
this tree, run alternately (old, new, then new, old, ...: a drift of the
machine's load weighs on both alike), each run in a fresh bench database.

    PYTHONPATH=. .venv/bin/python bench/wallets_ab.py                   # d2d755a vs this tree, 3 pairs
    PYTHONPATH=. .venv/bin/python bench/wallets_ab.py --pairs 5 --old <commit>
    PYTHONPATH=. .venv/bin/python bench/wallets_ab.py --statements      # what PostgreSQL does per trade

Both trees run THIS tree's bench/wallets_bench.py (``--only settle``, the
periodic audit skipped: older trees lack it), copied into the old tree's
worktree (``/tmp/wallets-ab-<commit>``, made with ``git worktree add`` when
missing), so the measuring code is the same and only the ledger's code and
SQL differ. The old tree reads this stack's PostgreSQL (port and run
directory passed in its environment).

The figure that decides is the CPU per settled trade (bench process +
PostgreSQL backends, from /proc): on a shared machine the rate follows the
load, the CPU per trade much less. The table gives the median of each tree
and its range; "not worse" holds when the new tree's median CPU per trade is
not above the old one's range.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from services.common.config import load_settings  # noqa: E402

TREE = Path(__file__).resolve().parent.parent
BENCH = "bench/wallets_bench.py"
AB_BENCH = "bench/wallets_ab_bench.py"  # the copy run in the old tree
RUN_TIMEOUT_S = 900
BENCH_LOCK = "/tmp/exchange-bench.lock"
LOCK_WAIT_S = 900

PHASES = (  # (name, pattern of the bench's result line)
    ("one settler", re.compile(r"^settle_trades: .* one settler: ([\d,]+) trades/s")),
    ("pipelined", re.compile(r"^settle_batches: .* pipelined, .*: ([\d,]+) trades/s")),
    ("per market", re.compile(r"^settle_trades: .* one settler per market .*: ([\d,]+) trades/s")),
)
CPU = re.compile(r"CPU per trade: bench process (\d+) us \+ PostgreSQL (\d+) us; "
                 r"load average ([\d.]+) -> ([\d.]+)")
PROFILE = re.compile(r"top-level execution ([\d.]+) us .* WAL ([\d.]+) records / (\d+) bytes"
                     r".* shared buffers ([\d.]+) accessed")


def worktree(commit: str) -> Path:
    """The old tree's worktree, made once; this tree's bench copied into it."""
    path = Path(f"/tmp/wallets-ab-{commit}")
    if not path.exists():
        subprocess.run(["git", "-C", str(TREE), "worktree", "add", "--detach", str(path), commit],
                       check=True, capture_output=True, timeout=120)
    head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True, timeout=30).stdout.strip()
    wanted = subprocess.run(["git", "-C", str(TREE), "rev-parse", commit], check=True,
                            capture_output=True, text=True, timeout=30).stdout.strip()
    if head != wanted:
        sys.exit(f"{path} is at {head}, not {commit}: remove it (git worktree remove) and rerun")
    shutil.copyfile(TREE / BENCH, path / AB_BENCH)
    return path


def run_bench(tree: Path, bench: str, extra: list[str], log: Path) -> dict:
    """One bench run in ``tree``, its output kept in ``log``:
    {phase: (trades/s, bench us, PostgreSQL us, load)}."""
    settings = load_settings()
    env = {**os.environ, "PYTHONPATH": str(tree),
           "EXCHANGE_POSTGRES_PORT": str(settings["EXCHANGE_POSTGRES_PORT"]),
           "EXCHANGE_RUN_DIR": str(settings.run_dir)}
    with open(BENCH_LOCK, "w") as lock:  # one bench at a time (bench/README.md), and one bench database
        for _ in range(LOCK_WAIT_S):
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(1)
        else:
            sys.exit(f"{BENCH_LOCK} still taken after {LOCK_WAIT_S} s (another bench runs)")
        result = subprocess.run([sys.executable, bench, "--only", "settle", "--no-periodic-audit", *extra],
                                cwd=tree, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    log.write_text(result.stdout)
    if result.returncode != 0 or "\naudit: clean" not in result.stdout:
        sys.exit(f"bench in {tree} failed ({result.returncode}):\n{result.stdout[-3000:]}"
                 f"\n{result.stderr[-3000:]}")
    return parse(result.stdout)


def parse(output: str) -> dict:
    """The bench's printed figures: {phase: [trades/s, bench us, PostgreSQL
    us, load]}, and with --statements {"pipelined (statements)": [top-level
    us, WAL records, WAL bytes]} (per trade)."""
    figures, phase = {}, None
    for line in output.splitlines():
        for name, pattern in PHASES:
            match = pattern.match(line)
            if match:
                phase = name
                figures[name] = [float(match.group(1).replace(",", ""))]
        cpu = CPU.search(line)
        if cpu and phase:
            figures[phase] += [float(cpu.group(1)), float(cpu.group(2)), float(cpu.group(3))]
        profile = PROFILE.search(line)
        if profile and phase:
            figures[phase + " (statements)"] = [float(g) for g in profile.groups()]
    return figures


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="d2d755a", help="the commit to compare with")
    parser.add_argument("--pairs", type=int, default=3, help="runs of each tree, alternating")
    parser.add_argument("--statements", action="store_true",
                        help="profile the pipelined settler's statements (slower: compare "
                             "what is done, not rates)")
    parser.add_argument("bench_args", nargs="*", help="passed to wallets_bench.py (after --)")
    args = parser.parse_args()
    trees = {"old": (worktree(args.old), AB_BENCH), "new": (TREE, BENCH)}
    extra = [*args.bench_args, *(["--statements"] if args.statements else [])]
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    started = time.strftime("%H:%M", time.gmtime())
    logs = load_settings().run_dir / "bench" / f"wallets-ab-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    logs.mkdir(parents=True)
    print(f"each run's output: {logs}/<pair>-<tree>.txt", flush=True)
    for pair in range(args.pairs):
        for name in (("old", "new") if pair % 2 == 0 else ("new", "old")):
            figures = run_bench(*trees[name], extra, logs / f"{pair + 1}-{name}.txt")
            runs[name].append(figures)
            print(f"{time.strftime('%H:%M:%S', time.gmtime())} {name}: " + "; ".join(
                f"{phase} {figures[phase][0]:,.0f}/s {figures[phase][1] + figures[phase][2]:.0f} us"
                for phase, _ in PHASES), flush=True)
    print(f"\nmedian (range) of {args.pairs} runs each, {started}-"
          f"{time.strftime('%H:%M', time.gmtime())} UTC, old = {args.old}, new = this tree; "
          f"load average at the phases' start {spread([x[phase][3] for r in runs.values() for x in r for phase, _ in PHASES])}")
    print("| phase | tree | trades/s | CPU us/trade, bench | CPU us/trade, PostgreSQL | CPU us/trade, total |")
    print("|---|---|---|---|---|---|")
    for phase, _ in PHASES:
        for name in ("old", "new"):
            rows = [r[phase] for r in runs[name]]
            print(f"| {phase} | {name} | {spread([r[0] for r in rows])} | {spread([r[1] for r in rows])} "
                  f"| {spread([r[2] for r in rows])} | {spread([r[1] + r[2] for r in rows])} |")
    if args.statements:
        print("\npipelined, pg_stat_statements per trade: top-level execution us, WAL records, "
              "WAL bytes, shared buffers accessed (the last three do not depend on the load)")
        for name in ("old", "new"):
            rows = [r["pipelined (statements)"] for r in runs[name]]
            print(f"  {name}: " + ", ".join(f"{statistics.median([r[i] for r in rows]):,.1f} "
                                            f"({min(r[i] for r in rows):,.1f}-{max(r[i] for r in rows):,.1f})"
                                            for i in range(4)))
    print("\n" + verdict([r["pipelined"][1] + r["pipelined"][2] for r in runs["old"]],
                         [r["pipelined"][1] + r["pipelined"][2] for r in runs["new"]]))


def verdict(old: list[float], new: list[float]) -> str:
    """The pipelined settler's CPU per trade (us), new against old: not
    worse while the new median is within the old runs' range or below it."""
    worse = statistics.median(new) > max(old)
    return (f"pipelined settler, CPU per trade: new {statistics.median(new):.0f} us against old "
            f"{statistics.median(old):.0f} us ({statistics.median(new) / statistics.median(old) - 1:+.0%}): "
            f"{'WORSE' if worse else 'not worse'} (new median against the old runs' range "
            f"{min(old):.0f}-{max(old):.0f} us)")


if __name__ == "__main__":
    main()
