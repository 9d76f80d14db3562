"""Schema runners: numbered SQL files for PostgreSQL, numbered CQL files for
Cassandra. Each file is applied once and recorded with its checksum; editing a
file that already ran is an error rather than a silent divergence.

File names are ``NNN_description.sql`` / ``NNN_description.cql``.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from services.common.config import REPO_ROOT

_NAME = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.(sql|cql)$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def read_migrations(component: str, directory: Path, suffix: str) -> list[Migration]:
    found = []
    for path in sorted(directory.glob(f"*.{suffix}")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: name must be NNN_description.{suffix}")
        found.append(Migration(component, int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two files share a version number")
    return found


def service_sql_migrations(services_dir: Path = REPO_ROOT / "services") -> list[Migration]:
    """Every service's ``migrations/`` folder, in service-name order."""
    found: list[Migration] = []
    for directory in sorted(services_dir.glob("*/migrations")):
        found.extend(read_migrations(directory.parent.name, directory, "sql"))
    return found


# ---------------------------------------------------------------- PostgreSQL

_PG_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component  text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)"""


def apply_sql_migrations(conn, migrations: list[Migration]) -> list[Migration]:
    """Apply what has not run yet, each file in its own transaction.

    ``conn`` is a psycopg connection (autocommit off or on; transactions are
    explicit). Concurrent runners serialise on an advisory lock.
    """
    applied: list[Migration] = []
    with conn.transaction():
        conn.execute(_PG_LEDGER)
    for migration in migrations:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x6578636867,))
            row = conn.execute(
                "SELECT checksum FROM schema_migrations WHERE component = %s AND version = %s",
                (migration.component, migration.version)).fetchone()
            if row:
                if row[0] != migration.checksum:
                    raise MigrationError(
                        f"{migration.component} {migration.version:03d}_{migration.name} "
                        "changed after it was applied: add a new migration instead")
                continue
            conn.execute(migration.text)
            conn.execute(
                "INSERT INTO schema_migrations (component, version, name, checksum) "
                "VALUES (%s, %s, %s, %s)",
                (migration.component, migration.version, migration.name, migration.checksum))
            applied.append(migration)
    return applied


# ---------------------------------------------------------------- Cassandra

def split_cql(text: str) -> list[str]:
    """Statements of a CQL file: ``;`` ends a statement; ``--`` and ``//`` start comments."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--") or stripped.startswith("//"):
            continue
        lines.append(line)
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def apply_cql_migrations(session, keyspace: str, replication: str,
                         migrations: list[Migration]) -> list[Migration]:
    """Create the keyspace with this deployment's replication, then apply files.

    Files refer to the keyspace as ``{keyspace}``. Cassandra has no
    transactions: a file's statements must each be idempotent (IF NOT EXISTS),
    so a runner killed halfway can simply run again.
    """
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,47}", keyspace):
        raise MigrationError(f"bad keyspace name {keyspace!r}")
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}")
    session.execute(
        f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations ("
        "version int PRIMARY KEY, name text, checksum text, applied_at timestamp)")
    done = {row.version: row.checksum for row in
            session.execute(f"SELECT version, checksum FROM {keyspace}.schema_migrations")}
    applied = []
    for migration in migrations:
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                raise MigrationError(f"cql {migration.version:03d}_{migration.name} changed "
                                     "after it was applied: add a new file instead")
            continue
        for statement in split_cql(migration.text):
            session.execute(statement.replace("{keyspace}", keyspace))
        session.execute(
            f"INSERT INTO {keyspace}.schema_migrations (version, name, checksum, applied_at) "
            "VALUES (%s, %s, %s, toTimestamp(now()))",
            (migration.version, migration.name, migration.checksum))
        applied.append(migration)
    return applied
