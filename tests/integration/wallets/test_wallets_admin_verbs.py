"""The admin verbs of wallets need an admin principal (issue 11): each is
called over RPC without credentials, with a trader's token and with the
backend client's service-account token -- all refused with their codes,
nothing written -- and with an admin's token -- accepted. Before, any
process holding the AMQP login could approve withdrawals or move balances."""
import uuid

import psycopg
import pytest
from nameko.containers import ServiceContainer
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import replace_dependencies

from services.common.errors import code_of
from services.wallets.service import WalletsService
from tests.integration.identity_kit import principal_tokens  # noqa: F401 (fixture)

BTC_ADDRESS = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"


@pytest.fixture(scope="module")
def config(test_settings, wallets_schema):
    return {**test_settings.nameko_config(), "POSTGRES_DB": test_settings["EXCHANGE_POSTGRES_DB"]}


@pytest.fixture(scope="module")
def wallets(config):
    container = ServiceContainer(WalletsService, config)
    replace_dependencies(container, "settlement")   # the trading-path tests' queue
    container.start()
    yield container
    container.stop()


def as_caller(config, token=None):
    return ClusterRpcProxy(config, timeout=30,
                           context_data={"access_token": token} if token else {})


@pytest.fixture
def withdrawal(wallets, config, principal_tokens):
    """A user with 1 BTC and a pending withdrawal of 0.01 BTC."""
    user = f"adm-{uuid.uuid4().hex[:12]}"
    with as_caller(config) as rpc:
        rpc.wallets.open_accounts(user)
        address = rpc.wallets.deposit_address(user, "BTC")["address"]
        rpc.wallets.credit_deposit("BTC", address, "1", uuid.uuid4().hex * 2, 100)
        pending = rpc.wallets.request_withdrawal(user, "BTC", BTC_ADDRESS, "0.01",
                                                 f"w:{user}")
    return user, pending["withdrawal_id"]


def fee_tier(test_settings, user):
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        row = conn.execute("SELECT tier FROM wallets.fee_tiers WHERE user_id = %s",
                           (user,)).fetchone()
    return row and row[0]


def verbs(user, withdrawal_id, admin):
    """Each admin verb as a call on a proxy (the withdrawal starts pending)."""
    return {
        "adjust_balance": lambda rpc: rpc.wallets.adjust_balance(
            user, "BTC", "-0.001", f"adj:{uuid.uuid4()}", "correction"),
        "approve_withdrawal": lambda rpc: rpc.wallets.approve_withdrawal(withdrawal_id, admin),
        "mark_withdrawal_sent": lambda rpc: rpc.wallets.mark_withdrawal_sent(
            withdrawal_id, "ab" * 32, admin),
        "reject_withdrawal": lambda rpc: rpc.wallets.reject_withdrawal(
            withdrawal_id, admin, "test"),
        "set_fee_tier": lambda rpc: rpc.wallets.set_fee_tier(user, "vip1"),
    }


@pytest.mark.parametrize("verb", ["adjust_balance", "approve_withdrawal", "mark_withdrawal_sent",
                                  "reject_withdrawal", "set_fee_tier"])
@pytest.mark.parametrize("caller, code", [
    (None, "UNAUTHENTICATED"),
    ("garbage", "UNAUTHENTICATED"),
    ("trader", "ADMIN_REQUIRED"),
    ("service_account", "PERSON_REQUIRED"),
])
def test_an_admin_verb_refuses_everyone_but_an_admin(
        config, withdrawal, principal_tokens, test_settings, verb, caller, code):
    user, withdrawal_id = withdrawal
    token = {None: None, "garbage": "not.a.token",
             "trader": lambda: principal_tokens.person("trader"),
             "service_account": principal_tokens.service_account}[caller]
    token = token() if callable(token) else token
    with as_caller(config) as rpc:
        before = (rpc.wallets.balance(user, "BTC"), rpc.wallets.withdrawal(withdrawal_id),
                  fee_tier(test_settings, user))
    with as_caller(config, token) as rpc:
        with pytest.raises(Exception) as raised:
            verbs(user, withdrawal_id, principal_tokens.username("admin"))[verb](rpc)
    assert code_of(raised.value) == code, raised.value
    with as_caller(config) as rpc:
        assert (rpc.wallets.balance(user, "BTC"), rpc.wallets.withdrawal(withdrawal_id),
                fee_tier(test_settings, user)) == before


def test_an_admin_may_do_each_admin_verb(config, withdrawal, principal_tokens):
    user, withdrawal_id = withdrawal
    admin = principal_tokens.username("admin")
    calls = verbs(user, withdrawal_id, admin)
    with as_caller(config, principal_tokens.person("admin")) as rpc:
        assert calls["adjust_balance"](rpc)
        assert calls["set_fee_tier"](rpc)["tier"] == "vip1"
        assert calls["approve_withdrawal"](rpc)["status"] == "approved"
        assert calls["mark_withdrawal_sent"](rpc)["status"] == "sent"
    # Reject: on a second withdrawal (a sent one is final).
    with as_caller(config) as rpc:
        second = rpc.wallets.request_withdrawal(user, "BTC", BTC_ADDRESS, "0.01",
                                                f"w2:{user}")["withdrawal_id"]
    with as_caller(config, principal_tokens.person("admin")) as rpc:
        assert rpc.wallets.reject_withdrawal(second, admin, "test")["status"] == "rejected"
        # The admin argument must name the admin who presents the token.
        with pytest.raises(Exception) as raised:
            rpc.wallets.approve_withdrawal(second, "someone-else")
        assert code_of(raised.value) in ("ADMIN_MISMATCH", "ILLEGAL_WITHDRAWAL_TRANSITION")
