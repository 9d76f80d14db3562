"""Wallets integration fixtures: the real PostgreSQL test database.

The schema is applied once per session; every test works with fresh user ids
(the database persists across runs), and the autouse ``clean_audit`` fixture
fails a test after which ``audit()`` finds anything.
"""
import uuid

import psycopg
import pytest

from services.common.config import REPO_ROOT
from services.common.migrations import apply_sql_migrations, read_migrations
from services.common.postgres import make_pool
from services.wallets.assets import ASSETS
from services.wallets.providers import PostgresLedger

POOL_SIZE = 20


@pytest.fixture(scope="session")
def wallets_schema(test_settings):
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        apply_sql_migrations(conn, read_migrations(
            "wallets", REPO_ROOT / "services" / "wallets" / "migrations", "sql"))
    return test_settings.postgres_dsn()


@pytest.fixture(scope="session")
def wallets_pool(test_settings, wallets_schema):
    pool = make_pool(test_settings, max_size=POOL_SIZE, min_size=4, name="wallets-tests")
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def ledger(wallets_pool):
    """The provider-level ledger the service's workers get, on the test database."""
    ledger = PostgresLedger(wallets_pool)
    ledger.ensure_system_accounts()
    return ledger


@pytest.fixture(autouse=True)
def clean_audit(request):
    """After every test: the whole ledger passes the audit."""
    yield
    if "ledger" in request.fixturenames or "wallets_pool" in request.fixturenames:
        findings = request.getfixturevalue("ledger").audit()
        assert findings == [], findings


@pytest.fixture
def new_user(ledger):
    """A factory of users with open accounts (unique ids: the database persists)."""
    def make(prefix="u"):
        user = f"{prefix}-{uuid.uuid4()}"
        ledger.open_accounts(user)
        return user
    return make


@pytest.fixture
def fund(ledger):
    """Credit a user through a real confirmed deposit."""
    def deposit(user, asset_code, amount):
        asset = ASSETS[asset_code]
        address = ledger.deposit_address(user, asset)["address"]
        txid = uuid.uuid4().hex * 2
        if asset.chain != "bitcoin":
            txid = "0x" + txid
        return ledger.credit_deposit(asset, address, amount, txid, asset.confirmations)
    return deposit
