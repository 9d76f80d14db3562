"""Restore drill (issue 15): back up, destroy the PostgreSQL data, restore to
the last commit, and the ledger audits as before.

On a private PostgreSQL of this machine (Debian's server binaries, as
Patroni runs them in the zones) with the zones' WAL archiving
(`archive_command` copying each segment to an archive directory): every
migration of the exchange, a ledger with deposits and holds written through
the wallets' own ledger code, a base backup by
ansible/roles/backup/files/exchange_backup.py (the program roles/backup
schedules), more commits after the backup (only in the WAL archive), the
server killed and its data directory deleted, then `exchange_backup.py
restore` and a start that replays the archive. The audit's findings, every
account's balances and the number of journal transactions equal those before;
the last commit is there.

The last commits reach the archive when their WAL segment is switched: the
drill switches it (`pg_switch_wal()`) as `archive_timeout` (60 s, roles/
patroni) does on a running cluster; what a cluster writes in the last
`archive_timeout` before losing every member is what a restore cannot
bring back (docs/operations.md). Needs no zones: runs wherever `make up` runs.
"""
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
import uuid
from decimal import Decimal

import psycopg
import pytest

from services.common import catalogue
from services.common.config import REPO_ROOT, load_settings
from services.common.migrations import apply_sql_migrations, service_sql_migrations
from services.common.postgres import make_pool
from stack import prepare

PG_BIN = "/usr/lib/postgresql/15/bin"
BACKUP = REPO_ROOT / "ansible" / "roles" / "backup" / "files" / "exchange_backup.py"
PORT = 15491  # not a port of config/defaults.env
# The backup program needs only the standard library: the system user runs it
# with the system interpreter (the virtualenv may live where it cannot read).
SYSTEM_PYTHON = "/usr/bin/python3"
USER = load_settings()["EXCHANGE_SYSTEM_USER"]

pytestmark = pytest.mark.skipif(not os.path.exists(f"{PG_BIN}/postgres") or os.geteuid() != 0,
                                reason="needs Debian's PostgreSQL 15 binaries and root")


def as_user(*argv, **kwargs):
    return subprocess.run(["runuser", "-u", USER, "--", *argv], check=True, capture_output=True,
                          text=True, timeout=kwargs.pop("timeout", 300), **kwargs)


class Server:
    def __init__(self, root, data):
        self.root, self.data = root, data
        self.process = None

    def start(self, archive):
        log = open(self.root / "postgres.log", "a")
        self.process = subprocess.Popen(
            ["runuser", "-u", USER, "--", f"{PG_BIN}/postgres", "-D", str(self.data),
             "-c", f"port={PORT}", "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={self.root}", "-c", "wal_level=replica",
             "-c", "archive_mode=on",
             "-c", f"archive_command=test ! -f {archive}/%f && cp %p {archive}/%f",
             "-c", "fsync=on", "-c", "max_wal_senders=4"],
            stdout=log, stderr=subprocess.STDOUT)
        for _ in range(240):  # bounded: recovery replays the archive first
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2) as conn:
                    if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                        return
            except psycopg.OperationalError:
                pass
            assert self.process.poll() is None, (self.root / "postgres.log").read_text()[-3000:]
            time.sleep(0.5)
        raise AssertionError("PostgreSQL did not finish starting")

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.kill()  # runuser passes SIGKILL on? no: kill the postmaster itself
            self.process.wait(timeout=30)
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().split()[0]), 9)
            except (ProcessLookupError, ValueError):
                pass
        for _ in range(60):
            if not port_open():
                break
            time.sleep(0.5)
        # The killed postmaster's socket lock names its PID; orphaned by the
        # killed runuser it can linger as an unreaped zombie, which the next
        # start takes for a live postmaster ("lock file ... already exists":
        # the CI rehearsal's failure). The server is dead: its lock goes too.
        for leftover in self.root.glob(".s.PGSQL.*"):
            leftover.unlink(missing_ok=True)

    @staticmethod
    def dsn(db, user="postgres"):
        return f"host=127.0.0.1 port={PORT} user={user} dbname={db}"


def port_open():
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def root():
    # Under run/ (git-ignored): the servers' system user must reach it.
    path = REPO_ROOT / "run" / "test-restore" / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    os.chmod(path.parent, 0o711)
    uid = pwd.getpwnam(USER).pw_uid
    os.chown(path, uid, -1)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def ledger_state(dsn):
    with psycopg.connect(dsn) as conn:
        balances = conn.execute("SELECT owner, asset, kind, available, locked FROM wallets.accounts "
                                "ORDER BY owner, asset, kind").fetchall()
        transactions = conn.execute("SELECT count(*), max(id) FROM wallets.transactions").fetchone()
    return balances, transactions


def test_a_destroyed_database_is_restored_to_its_last_commit_and_audits_the_same(root):
    assert not port_open(), f"port {PORT} taken"
    data, archive, backups = root / "data", root / "wal_archive", root / "backups"
    for path in (archive, backups):
        path.mkdir()
        os.chown(path, pwd.getpwnam(USER).pw_uid, -1)
    as_user(f"{PG_BIN}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--locale=C.UTF-8")
    server = Server(root, data)
    server.start(archive)
    pool = None
    try:
        settings = load_settings({"EXCHANGE_POSTGRES_HOST": "127.0.0.1", "EXCHANGE_POSTGRES_PORT": str(PORT),
                                  "EXCHANGE_POSTGRES_USER": "exchange", "EXCHANGE_POSTGRES_PASSWORD": "",
                                  "EXCHANGE_POSTGRES_DB": "exchange"})
        with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE ROLE exchange LOGIN")
            conn.execute("CREATE DATABASE exchange OWNER exchange")
            # The services' own roles, as `make up` makes them (the migrations grant to them).
            prepare.postgres_roles(settings, conn)
        dsn = server.dsn("exchange", "exchange")
        with psycopg.connect(dsn) as conn:
            apply_sql_migrations(conn, service_sql_migrations())
        catalogue.load_from_dsn(dsn)
        from services.wallets.assets import ASSETS
        from services.wallets.providers import PostgresLedger

        pool = make_pool(settings, max_size=4, min_size=1, name="restore-drill")
        ledger = PostgresLedger(pool)
        ledger.ensure_system_accounts()
        btc, usdt = ASSETS["BTC"], ASSETS["USDT"]

        def activity(prefix, n):
            for i in range(n):
                user = f"{prefix}-{uuid.uuid4()}"
                ledger.open_accounts(user)
                address = ledger.deposit_address(user, btc)["address"]
                ledger.credit_deposit(btc, address, 10_000_000 + i, uuid.uuid4().hex + uuid.uuid4().hex, 100)
                usdt_address = ledger.deposit_address(user, usdt)["address"]
                ledger.credit_deposit(usdt, usdt_address, 5_000_000_000, "0x" + uuid.uuid4().hex * 2, 100)
                ledger.hold(user, btc, 1_000_000, f"order:{prefix}:{i}")
            return user

        activity("before-backup", 10)
        env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(PORT), "PGUSER": "postgres"}
        as_user(SYSTEM_PYTHON, str(BACKUP), "base", "--dir", str(backups), env=env)
        last_user = activity("after-backup", 10)
        with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
            segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
            for _ in range(120):  # bounded: the archiver copies the switched segment
                archived = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
                if archived and archived >= segment:
                    break
                time.sleep(0.5)
            else:
                pytest.fail(f"segment {segment} not archived")
        audit_before, state_before = ledger.audit(), ledger_state(dsn)
        pool.close()
        pool = None

        # The disaster: the server dies and its data directory is gone.
        server.kill()
        shutil.rmtree(data)

        as_user(SYSTEM_PYTHON, str(BACKUP), "restore", "--dir", str(backups),
                "--wal-archive", str(archive), "--data", str(data))
        server.start(archive)
        pool = make_pool(settings, max_size=4, min_size=1, name="restore-drill")
        restored = PostgresLedger(pool)
        assert restored.audit() == audit_before == []
        assert ledger_state(dsn) == state_before
        assert Decimal(restored.balance(last_user, btc)["locked"]) > 0, "the last commit is missing"
    finally:
        if pool is not None:
            pool.close()
        server.kill()
