"""Schema runners: numbered SQL files for PostgreSQL, numbered CQL files for
Cassandra, and replaceable SQL functions.

Numbered files (``migrations/NNN_description.sql`` / ``.cql``) hold tables,
indexes and data changes. Each is applied once and recorded with its checksum;
editing a file that already ran is an error rather than a silent divergence,
unless the edited file names the checksum it ran as (``-- ran as sha256:<hex>``):
the way to take a function out of a migration that already ran, with a
promise that the rest of it does the same as before.

Replaceable SQL functions live in one file each, ``functions/<name>.sql``
(``CREATE OR REPLACE FUNCTION``, with ``CREATE OR REPLACE TRIGGER`` for the
triggers that call it): re-applied whenever the file's checksum differs from
the one recorded in ``schema_functions``, after every numbered migration
(migrations never depend on functions). A file names the function files it
needs first with ``-- requires: <component>/<name>`` lines.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from services.common.config import REPO_ROOT

_NAME = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.(sql|cql)$")
_FUNCTION_NAME = re.compile(r"^([a-z][a-z0-9_]*)\.sql$")
_RAN_AS = re.compile(r"^-- ran as sha256:([0-9a-f]{64})\s*$", re.M)
_REQUIRES = re.compile(r"^-- requires: ([a-z][a-z0-9_]*)/([a-z][a-z0-9_]*)\s*$", re.M)


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    """A numbered migration (``version`` set) or a replaceable function file
    (``version`` None, ``name`` the file's stem)."""
    component: str
    version: int | None
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def is_function(self) -> bool:
        return self.version is None

    @property
    def ran_as(self) -> frozenset[str]:
        """Checksums this file had when it ran before it was edited."""
        return frozenset(_RAN_AS.findall(self.text))

    @property
    def requires(self) -> tuple[tuple[str, str], ...]:
        return tuple(_REQUIRES.findall(self.text))

    @property
    def label(self) -> str:
        if self.is_function:
            return f"{self.component}/functions/{self.name}"
        return f"{self.component}/{self.version:03d}_{self.name}"


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


def read_functions(component: str, directory: Path) -> list[Migration]:
    """A component's function files, each after the ones it requires."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FUNCTION_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: name must be <function_name>.sql")
        found.append(Migration(component, None, match.group(1), path.read_text()))
    return found


def dependency_order(functions: list[Migration]) -> list[Migration]:
    """``functions`` sorted so that each comes after those it requires (else
    by component, then name)."""
    by_key = {(f.component, f.name): f for f in functions}
    ordered: list[Migration] = []
    state: dict[tuple[str, str], str] = {}

    def visit(key, path):
        if state.get(key) == "done":
            return
        if state.get(key) == "visiting":
            raise MigrationError("function files require each other in a cycle: "
                                 + " -> ".join(f"{c}/{n}" for c, n in path + [key]))
        state[key] = "visiting"
        for needed in by_key[key].requires:
            if needed not in by_key:
                raise MigrationError(f"{by_key[key].label} requires {needed[0]}/{needed[1]}, "
                                     "which is no function file")
            visit(needed, path + [key])
        state[key] = "done"
        ordered.append(by_key[key])

    for key in sorted(by_key):
        visit(key, [])
    return ordered


def service_sql_migrations(services_dir: Path = REPO_ROOT / "services") -> list[Migration]:
    """Every service's schema in the order it is applied: the numbered
    migrations of every component (component by component, by name), then
    every function file in dependency order. So a function file sees every
    table, and a migration never depends on a function: a migration that
    needs one (a trigger, a view on it) is written as part of a function file
    instead (``CREATE OR REPLACE TRIGGER``)."""
    found: list[Migration] = []
    functions: list[Migration] = []
    for directory in sorted(p for p in services_dir.iterdir() if p.is_dir()):
        if (directory / "migrations").is_dir():
            found.extend(read_migrations(directory.name, directory / "migrations", "sql"))
        if (directory / "functions").is_dir():
            functions.extend(read_functions(directory.name, directory / "functions"))
    return found + dependency_order(functions)


# ---------------------------------------------------------------- PostgreSQL

_PG_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component  text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
);
CREATE TABLE IF NOT EXISTS schema_functions (
    component  text        NOT NULL,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, name)
)"""

_LOCK = 0x6578636867


def apply_sql_migrations(conn, migrations: list[Migration]) -> list[Migration]:
    """Apply, in the order given, the migrations that have not run and the
    function files whose checksum changed: all in ONE transaction (a failure
    leaves the schema as it was), serialised against concurrent runners by an
    advisory lock. Returns what was applied.

    ``conn`` is a psycopg connection (autocommit off or on; the transaction
    is explicit).
    """
    applied: list[Migration] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute(_PG_LEDGER)
        ran = {(c, v): s for c, v, s in conn.execute(
            "SELECT component, version, checksum FROM schema_migrations")}
        current = {(c, n): s for c, n, s in conn.execute(
            "SELECT component, name, checksum FROM schema_functions")}
        for item in migrations:
            if item.is_function:
                if current.get((item.component, item.name)) == item.checksum:
                    continue
                conn.execute(item.text)
                conn.execute(
                    "INSERT INTO schema_functions (component, name, checksum) VALUES (%s, %s, %s) "
                    "ON CONFLICT (component, name) DO UPDATE SET checksum = EXCLUDED.checksum, "
                    "applied_at = now()", (item.component, item.name, item.checksum))
                applied.append(item)
                continue
            recorded = ran.get((item.component, item.version))
            if recorded is not None:
                if recorded != item.checksum and recorded not in item.ran_as:
                    raise MigrationError(
                        f"{item.label} changed after it was applied: add a new migration instead")
                continue
            conn.execute(item.text)
            conn.execute(
                "INSERT INTO schema_migrations (component, version, name, checksum) "
                "VALUES (%s, %s, %s, %s)",
                (item.component, item.version, item.name, item.checksum))
            applied.append(item)
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
