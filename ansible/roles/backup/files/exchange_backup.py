"""PostgreSQL base backups and point-in-time restore for the exchange's ledger.

    exchange_backup.py base     take a base backup now (pg_basebackup, tar, WAL streamed in)
    exchange_backup.py schedule take one every --every seconds while this host's
                                Patroni leads (--leader-url answers 200), keep --keep
    exchange_backup.py restore  make --data a copy of the newest base backup that
                                replays the WAL archive to its end (recovery.signal)

WAL segments are archived continuously by PostgreSQL itself (Patroni's
`archive_command`, roles/patroni); a base backup plus that archive restores
the database to the last archived commit. `schedule` runs under the host's
supervisord (roles/backup), so a dead scheduler is restarted like any
other process. Connection settings come from the standard libpq variables
(PGHOST, PGPORT, PGUSER, PGPASSWORD) so no password is on a command line.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

PG_BIN = Path(os.environ.get("EXCHANGE_PG_BIN", "/usr/lib/postgresql/15/bin"))
PREFIX = "base-"


def log(message: str) -> None:
    print(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} {message}", flush=True)


def backups(directory: Path) -> list[Path]:
    """Finished base backups, oldest first (a finished one has backup_manifest)."""
    return sorted(p for p in directory.glob(PREFIX + "*") if (p / "backup_manifest").exists())


def take_base(directory: Path, keep: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    name = PREFIX + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    partial = directory / (name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run([str(PG_BIN / "pg_basebackup"), "-D", str(partial), "-Ft", "-z",
                    "-X", "stream", "--checkpoint=fast", "--no-password", "-l", name],
                   check=True, timeout=3600)
    target = directory / name
    partial.rename(target)
    for old in backups(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    log(f"base backup {target}")
    return target


def leads(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def schedule(directory: Path, every: int, keep: int, leader_url: str) -> None:
    """Forever (supervisord keeps it): a base backup whenever the newest is
    older than ``every`` seconds and this host leads."""
    while True:
        newest = backups(directory)[-1:] if directory.exists() else []
        age = time.time() - newest[0].stat().st_mtime if newest else float("inf")
        if age >= every and leads(leader_url):
            try:
                take_base(directory, keep)
            except (subprocess.SubprocessError, OSError) as problem:
                log(f"base backup failed: {problem}")
        time.sleep(min(60, every))


def restore(directory: Path, wal_archive: Path, data: Path, target_time: str | None) -> Path:
    """A data directory from the newest base backup that, when PostgreSQL
    starts on it, replays ``wal_archive`` (to its end, or to ``target_time``)
    and is promoted."""
    found = backups(directory)
    if not found:
        raise SystemExit(f"no base backup in {directory}")
    base = found[-1]
    if data.exists() and any(data.iterdir()):
        raise SystemExit(f"{data} is not empty: move it away first (never restore over data)")
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    with tarfile.open(base / "base.tar.gz") as tar:
        tar.extractall(data, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
    wal = base / "pg_wal.tar.gz"
    if wal.exists():
        with tarfile.open(wal) as tar:
            tar.extractall(data / "pg_wal", **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
    settings = [f"restore_command = 'cp {wal_archive}/%f %p'",
                "recovery_target_timeline = 'latest'",
                "recovery_target_action = 'promote'"]
    if target_time:
        settings.append(f"recovery_target_time = '{target_time}'")
    with open(data / "postgresql.auto.conf", "a") as conf:
        conf.write("\n# exchange_backup.py restore\n" + "\n".join(settings) + "\n")
    (data / "recovery.signal").touch()
    log(f"restored {base.name} into {data}; start PostgreSQL on it to replay {wal_archive}")
    return base


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    base = sub.add_parser("base")
    base.add_argument("--dir", type=Path, required=True)
    base.add_argument("--keep", type=int, default=3)
    sched = sub.add_parser("schedule")
    sched.add_argument("--dir", type=Path, required=True)
    sched.add_argument("--keep", type=int, default=3)
    sched.add_argument("--every", type=int, required=True, help="seconds between base backups")
    sched.add_argument("--leader-url", required=True, help="Patroni's /primary of this host")
    rest = sub.add_parser("restore")
    rest.add_argument("--dir", type=Path, required=True)
    rest.add_argument("--wal-archive", type=Path, required=True)
    rest.add_argument("--data", type=Path, required=True)
    rest.add_argument("--target-time", help="stop replaying at this time (default: the archive's end)")
    args = parser.parse_args(argv)
    if args.command == "base":
        take_base(args.dir, args.keep)
    elif args.command == "schedule":
        schedule(args.dir, args.every, args.keep, args.leader_url)
    else:
        restore(args.dir, args.wal_archive, args.data, args.target_time)


if __name__ == "__main__":
    main(sys.argv[1:])
