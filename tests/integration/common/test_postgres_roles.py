"""Each service connects to PostgreSQL as its own role, with rights on its
own schema only and EXECUTE on what other services declare for it (roles from
stack/prepare.py, grants from the migrations and function files)."""
import uuid

import psycopg
import pytest

from services.common.postgres import refusal_of
from stack.prepare import postgres_principals


def connect(test_settings, principal):
    return psycopg.connect(test_settings.postgres_dsn(principal=principal), autocommit=True)


def refused(conn, statement, params=()):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement, params)


def test_orders_cannot_touch_wallets_tables_but_may_hold_through_its_function(test_settings):
    with connect(test_settings, "orders") as conn:
        refused(conn, "UPDATE wallets.accounts SET owner = owner WHERE false")
        refused(conn, "SELECT count(*) FROM wallets.accounts")
        refused(conn, "SELECT wallets.move_funds('hold', 'x', 'USDT', 1, 'r')")
        # The balance trigger's announcement: nobody else's to write.
        refused(conn, "SELECT wallets.announce_balances_changed(%s::jsonb)",
                ('[{"user": "anyone", "asset": "USDT"}]',))
        # Allowed to call: wallets answers with its own refusal.
        nobody = f"nobody-{uuid.uuid4()}"
        with pytest.raises(psycopg.Error) as caught:
            conn.execute("SELECT wallets.hold_funds(%s, 'USDT', 1, 'role-test')", (nobody,))
        assert refusal_of(caught.value)[0] == "UNKNOWN_USER"
        conn.execute("SELECT wallets.lock_user_accounts(ARRAY[%s], ARRAY['USDT'])", (nobody,))
        assert conn.execute("SELECT count(*) FROM orders WHERE false").fetchone() == (0,)


def test_wallets_cannot_read_users_or_orders_tables(test_settings):
    with connect(test_settings, "wallets") as conn:
        refused(conn, "SELECT count(*) FROM users.profiles")
        refused(conn, "SELECT count(*) FROM orders.orders")
        assert conn.execute("SELECT count(*) FROM accounts WHERE false").fetchone() == (0,)


def test_no_service_role_may_change_the_schema_nor_another_the_registry(test_settings):
    for principal in postgres_principals():
        with connect(test_settings, principal) as conn:
            refused(conn, "CREATE TABLE public.role_test (id int)")
            if principal != "registry":
                refused(conn, "UPDATE registry.markets SET status = status WHERE false")
            # The catalogue is everyone's to read, through its function.
            assert conn.execute("SELECT registry.catalogue_version()").fetchone()[0] > 0


def test_each_service_role_works_in_its_own_schema(test_settings):
    own = {"orders": "orders", "matching": "matching_journal", "users": "profiles",
           "wallets": "accounts", "registry": "registry.assets"}
    for principal, table in own.items():
        with connect(test_settings, principal) as conn:
            assert conn.execute(f"SELECT count(*) FROM {table} WHERE false").fetchone() == (0,)
            refused(conn, f"DROP TABLE {table}")
