"""Cassandra snapshots of the exchange's keyspaces on one node.

    cassandra_snapshot.py take      a snapshot now (nodetool snapshot: flush, then
                                    hard links of every SSTable), keep --keep
    cassandra_snapshot.py schedule  take one every --every seconds, forever

nodetool is Cassandra's own `org.apache.cassandra.tools.NodeTool`, run from the
node's jars (--classpath) against its JMX port on the loopback (--jmx-port:
EXCHANGE_CASSANDRA_JMX_PORT, which the three-zones inventory sets). A snapshot
lives beside the data it links to: `<data>/<keyspace>/<table>-<id>/snapshots/<tag>/`.
Restore: docs/operations.md ("Backups and restore"). `schedule` runs under the
host's supervisord (roles/backup). Only the standard library.
"""
from __future__ import annotations

import argparse
import datetime as dt
import glob
import subprocess
import sys
import time
from pathlib import Path

PREFIX = "exchange-"


def log(message: str) -> None:
    print(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} {message}", flush=True)


class NodeTool:
    def __init__(self, java: str, classpath: str, jmx_port: int, jvm_options: Path | None):
        # A directory pattern (opt/cassandra-*/lib/*) is expanded here: java
        # itself expands only a final "*".
        parts = []
        for part in classpath.split(":"):
            head, _, tail = part.rpartition("/")
            parts += [f"{d}/{tail}" for d in sorted(glob.glob(head))] if "*" in head else [part]
        # The module openings the server is started with (Java 17): nodetool
        # loads the same classes and refuses to run without them.
        opens = [line.strip() for line in jvm_options.read_text().splitlines()
                 if line.startswith("--add-")] if jvm_options else []
        self.argv = [java, "-Xmx128m", *opens, "-cp", ":".join(parts), "org.apache.cassandra.tools.NodeTool",
                     "-h", "127.0.0.1", "-p", str(jmx_port)]

    def __call__(self, *args: str) -> str:
        result = subprocess.run([*self.argv, *args], capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"nodetool {' '.join(args)}: {(result.stderr or result.stdout).strip()[:500]}")
        return result.stdout


def snapshots(data: Path, keyspaces: list[str]) -> list[str]:
    """Our snapshots' tags on this node, oldest first."""
    tags = {p.name for ks in keyspaces for p in data.glob(f"{ks}/*/snapshots/{PREFIX}*")}
    return sorted(tags)


def take(nodetool: NodeTool, data: Path, keyspaces: list[str], keep: int) -> str:
    tag = PREFIX + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    nodetool("snapshot", "-t", tag, "--", *keyspaces)
    for old in snapshots(data, keyspaces)[:-keep]:
        nodetool("clearsnapshot", "-t", old, "--", *keyspaces)
    files = sum(1 for ks in keyspaces for p in data.glob(f"{ks}/*/snapshots/{tag}/*") if p.is_file())
    log(f"snapshot {tag} of {', '.join(keyspaces)}: {files} files")
    return tag


def schedule(nodetool: NodeTool, data: Path, keyspaces: list[str], every: int, keep: int) -> None:
    """Forever (supervisord keeps it): a snapshot whenever the newest is older
    than ``every`` seconds (the tag is its UTC time)."""
    while True:
        found = snapshots(data, keyspaces)
        age = float("inf")
        if found:
            taken = dt.datetime.strptime(found[-1][len(PREFIX):], "%Y%m%dT%H%M%SZ")
            age = time.time() - taken.replace(tzinfo=dt.timezone.utc).timestamp()
        if age >= every:
            try:
                take(nodetool, data, keyspaces, keep)
            except (RuntimeError, subprocess.SubprocessError, OSError) as problem:
                log(f"snapshot failed: {problem}")
        time.sleep(min(60, every))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["take", "schedule"])
    parser.add_argument("--java", default="/usr/bin/java")
    parser.add_argument("--classpath", required=True, help="the node's conf directory and lib/*")
    parser.add_argument("--jmx-port", type=int, required=True)
    parser.add_argument("--jvm-options", type=Path, help="the server's JVM options file (its --add-* lines)")
    parser.add_argument("--data", type=Path, required=True, help="the node's data directory")
    parser.add_argument("--keyspace", action="append", required=True)
    parser.add_argument("--keep", type=int, default=3)
    parser.add_argument("--every", type=int, default=21600, help="seconds between snapshots (schedule)")
    args = parser.parse_args(argv)
    nodetool = NodeTool(args.java, args.classpath, args.jmx_port, args.jvm_options)
    if args.command == "take":
        take(nodetool, args.data, args.keyspace, args.keep)
    else:
        schedule(nodetool, args.data, args.keyspace, args.every, args.keep)


if __name__ == "__main__":
    main(sys.argv[1:])
