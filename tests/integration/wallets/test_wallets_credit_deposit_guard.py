"""``wallets.credit_deposit`` mints money: only the chain watcher's login
and the operator's may call it (issue 11). The guard is the broker's: the
RPC exchange's topic permissions (stack/rabbitmq_access.py) let no other
principal publish ``wallets.credit_deposit``. A trader or a service account
reaches wallets only through the gateway's login, which may not; so each
such caller is refused whatever token it presents, and nothing is credited.
Before, any process holding the one AMQP login could credit any deposit."""
import uuid

import pytest
from nameko.containers import ServiceContainer
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import replace_dependencies

from services.wallets.service import WalletsService
from tests.integration.identity_kit import principal_tokens  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def vhost(test_settings):
    return test_settings["EXCHANGE_RABBITMQ_VHOST"]


@pytest.fixture(scope="module")
def wallets(test_settings, vhost, wallets_schema):
    # Wallets under its own login too.
    config = {**test_settings.nameko_config(vhost, "wallets"),
              "POSTGRES_DB": test_settings["EXCHANGE_POSTGRES_DB"]}
    container = ServiceContainer(WalletsService, config)
    replace_dependencies(container, "settlement")   # the trading-path tests' queue
    container.start()
    yield container
    container.stop()


def as_caller(test_settings, vhost, principal=None, token=None):
    return ClusterRpcProxy(test_settings.nameko_config(vhost, principal), timeout=30,
                           context_data={"access_token": token} if token else {})


@pytest.fixture
def deposit(wallets, test_settings, vhost):
    """A user's BTC deposit address, and the deposit to credit to it."""
    user = f"dep-{uuid.uuid4().hex[:12]}"
    with as_caller(test_settings, vhost) as rpc:
        rpc.wallets.open_accounts(user)
        address = rpc.wallets.deposit_address(user, "BTC")["address"]
    return user, ("BTC", address, "0.5", uuid.uuid4().hex * 2, 100)


def balance(test_settings, vhost, user):
    with as_caller(test_settings, vhost) as rpc:
        return rpc.wallets.balance(user, "BTC")


@pytest.mark.parametrize("principal, token", [
    ("gateway", None),                # no credentials
    ("gateway", "trader"),            # a trader's token
    ("gateway", "service_account"),   # the backend client's service account
    ("gateway", "admin"),             # an admin through the gateway: not the gateway's verb
    ("marketdata", None), ("orders", None), ("users", None),   # other services
])
def test_credit_deposit_refuses_everyone_but_the_watcher_and_the_operator(
        test_settings, vhost, deposit, principal_tokens, principal, token):
    user, args = deposit
    token = {None: None, "trader": lambda: principal_tokens.person("trader"),
             "admin": lambda: principal_tokens.person("admin"),
             "service_account": principal_tokens.service_account}[token]
    before = balance(test_settings, vhost, user)
    with pytest.raises(Exception, match="ACCESS_REFUSED") as raised:
        with as_caller(test_settings, vhost, principal, token() if token else None) as rpc:
            rpc.wallets.credit_deposit(*args)
    # The gateway's publish is refused; a service's login may not even make
    # the standalone caller's reply queue.
    assert ("wallets.credit_deposit" in str(raised.value)
            or (principal != "gateway" and "rpc.reply-standalone_rpc_proxy" in str(raised.value)))
    assert balance(test_settings, vhost, user) == before


def test_credit_deposit_without_a_password_is_refused_at_login(test_settings, vhost):
    anonymous = test_settings.with_overrides(EXCHANGE_RABBITMQ_PASSWORD_DEPOSIT_WATCHER="guess")
    with pytest.raises(Exception, match="ACCESS_REFUSED|Login|credentials"):
        with as_caller(anonymous, vhost, "deposit_watcher") as rpc:
            rpc.wallets.health()


def test_the_chain_watcher_and_the_operator_credit_deposits(test_settings, vhost, deposit):
    user, (asset, address, amount, txid, confirmations) = deposit
    before = balance(test_settings, vhost, user)
    with as_caller(test_settings, vhost, "deposit_watcher") as rpc:
        credited = rpc.wallets.credit_deposit(asset, address, amount, txid, confirmations)
    assert credited["status"] == "credited", credited
    with as_caller(test_settings, vhost) as rpc:   # the operator: a second deposit
        rpc.wallets.credit_deposit(asset, address, amount, uuid.uuid4().hex * 2, confirmations)
    after = balance(test_settings, vhost, user)
    assert after != before
    assert after["available"] in ("1", "1.0", "1.00000000"), after
