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
    """Credit a user (minor units) through a real confirmed deposit."""
    def deposit(user, asset_code, amount):
        asset = ASSETS[asset_code]
        address = ledger.deposit_address(user, asset)["address"]
        return ledger.credit_deposit(asset, address, amount, txid_for(asset_code), asset.confirmations)
    return deposit


@pytest.fixture(scope="session")
def db(wallets_schema):
    """A plain connection for reading the tables directly (autocommit)."""
    with psycopg.connect(wallets_schema, autocommit=True) as conn:
        yield conn


@pytest.fixture
def footprint(db):
    """Everything stored about a user: balances, postings, withdrawals,
    deposit addresses, fee tier. Equal before and after = nothing written."""
    def read(user):
        return {
            "accounts": db.execute(
                "SELECT asset, available, locked FROM wallets.accounts WHERE owner = %s ORDER BY asset",
                (user,)).fetchall(),
            "postings": db.execute(
                "SELECT p.transaction_id, p.bucket, p.amount FROM wallets.postings p "
                "JOIN wallets.accounts a ON a.id = p.account_id WHERE a.owner = %s "
                "ORDER BY 1, 2", (user,)).fetchall(),
            "withdrawals": db.execute(
                "SELECT id, status, txid FROM wallets.withdrawals WHERE user_id = %s ORDER BY id",
                (user,)).fetchall(),
            "addresses": db.execute(
                "SELECT asset, address FROM wallets.deposit_addresses WHERE user_id = %s ORDER BY 1",
                (user,)).fetchall(),
            "tier": db.execute("SELECT tier FROM wallets.fee_tiers WHERE user_id = %s",
                               (user,)).fetchall(),
        }
    return read


def txid_for(asset_code):
    """A fresh transaction id in the asset's chain format."""
    txid = uuid.uuid4().hex * 2
    return txid if ASSETS[asset_code].chain == "bitcoin" else "0x" + txid


@pytest.fixture
def new_txid():
    return txid_for
