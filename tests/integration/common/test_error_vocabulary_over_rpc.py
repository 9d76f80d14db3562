"""One error vocabulary over real RPC: each service, called with bad input
through the test vhost's broker, refuses with a registered coded error, and
the caller gets that typed exception back -- not a bare ``RemoteError`` --
with its code, message and field (services/common/errors.py, docs/errors.md).

The services run in-process on the real servers (PostgreSQL, RabbitMQ,
Keycloak for the users service's token check). Marketdata's refusals are
checked the same way in tests/integration/marketdata/test_marketdata_reads.py
(``test_bad_input_is_a_typed_error``: it needs that suite's isolated market
and queues).
"""
import uuid

import pytest
from kombu import Connection, Queue
from nameko.exceptions import RemoteError
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import errors as common
from services.matching import errors as matching_errors
from services.matching.service import MatchingService
from services.orders import errors as orders_errors
from services.orders.service import OrdersService
from services.registry import errors as registry_errors
from services.registry.service import RegistryService
from services.users import errors as users_errors
from services.users.service import UsersService
from services.wallets import errors as wallets_errors
from services.wallets.service import WalletsService
from tests.integration.identity_kit import principal_tokens  # noqa: F401 (fixture)


class Services:
    """RPC proxies of this test's own service containers, by service."""

    def __init__(self, proxy, names: dict):
        for service, name in names.items():
            setattr(self, service, getattr(proxy, name))


@pytest.fixture
def rpc(container_factory, nameko_config, principal_tokens):
    """Each service under a name of its own: the test vhost is shared with
    other runs (other code), and Nameko routes RPC by service name."""
    config = {**nameko_config, "EXCHANGE_USERS_WALLETS_TIMEOUT_S": "15"}
    tag = uuid.uuid4().hex[:8]
    names, containers = {}, []
    for cls in (WalletsService, MatchingService, OrdersService, RegistryService, UsersService):
        names[cls.name] = f"{cls.name}_v{tag}"
        containers.append(container_factory(type(cls.__name__, (cls,), {"name": names[cls.name]}),
                                            config))
        containers[-1].start()
    try:
        with ClusterRpcProxy(config, timeout=30, context_data={
                "access_token": principal_tokens.person("admin")}) as proxy:
            yield Services(proxy, names)
    finally:
        for container in containers:
            container.stop()
        with Connection(config["AMQP_URI"]) as amqp:
            for name in names.values():  # durable RPC queues outlive their containers
                Queue(f"rpc-{name}")(amqp.default_channel).delete()


def refusal(call, *args, **kwargs) -> Exception:
    """The exception the caller receives; fails the test on a bare RemoteError."""
    try:
        call(*args, **kwargs)
    except RemoteError as exc:
        pytest.fail(f"a bare RemoteError, not a typed exception: {exc.exc_type} {exc.value}")
    except Exception as exc:  # the typed refusal under test
        return exc
    pytest.fail("no refusal")


def check(exc: Exception, cls: type, code: str) -> None:
    assert isinstance(exc, cls), f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    assert isinstance(exc, common.CodedError)
    assert exc.code == code and common.code_of(exc) == code
    assert str(exc) == f"{code}: {exc.message}"


def test_each_service_refuses_bad_input_with_its_typed_coded_error(rpc, principal_tokens):
    user = f"t-{uuid.uuid4().hex[:12]}"
    rpc.wallets.open_accounts(user)

    # wallets: grammar, the common UnknownAsset / UnknownMarket, the ledger's refusal
    check(refusal(rpc.wallets.hold, user, "BTC", 0.5, "float-amount"),
          wallets_errors.InvalidAmount, "INVALID_AMOUNT")
    check(refusal(rpc.wallets.balance, user, "DOGE"), common.UnknownAsset, "UNKNOWN_ASSET")
    check(refusal(rpc.wallets.settle_trades, [{
        "market": "DOGE-USDT", "trade_id": 1, "price": "1", "quantity": "1", "taker_side": "buy",
        "maker_user_id": user, "taker_user_id": user}]), common.UnknownMarket, "UNKNOWN_MARKET")
    check(refusal(rpc.wallets.hold, user, "BTC", "5", f"too-much:{user}"),
          wallets_errors.InsufficientFunds, "INSUFFICIENT_FUNDS")
    sql_decided_refusals_arrive_typed(rpc, user, principal_tokens.username("admin"))

    # orders: its own codes, the common UnknownMarket, and a refusal raised in
    # SQL (the hold) naming its reason once
    exc = refusal(rpc.orders.place_order, user, "BTC-USDT", "buy", "limit", quantity="0.01",
                  price="abc")
    check(exc, orders_errors.InvalidOrder, "INVALID_ORDER")
    assert exc.field == "price"
    check(refusal(rpc.orders.place_order, user, "DOGE-USDT", "buy", "limit", quantity="1",
                  price="1"), common.UnknownMarket, "UNKNOWN_MARKET")
    check(refusal(rpc.orders.get_order, user, order_id=2 ** 62), orders_errors.UnknownOrder,
          "UNKNOWN_ORDER")
    exc = refusal(rpc.orders.place_order, user, "BTC-USDT", "buy", "limit", quantity="1",
                  price="100")
    check(exc, orders_errors.OrderRejected, "ORDER_REJECTED")
    assert exc.reason == "INSUFFICIENT_FUNDS" and common.reason_of(exc) == "INSUFFICIENT_FUNDS"
    assert str(exc).count("INSUFFICIENT_FUNDS") == 1, str(exc)

    # matching
    check(refusal(rpc.matching.get_depth, "DOGE-USDT", 1), common.UnknownMarket,
          "UNKNOWN_MARKET")
    check(refusal(rpc.matching.set_reference_price, "BTC-USDT", "abc"),
          matching_errors.InvalidMarket, "INVALID_MARKET")

    # registry
    check(refusal(rpc.registry.update_market, "not-a-token", "BTC-USDT", {"status": "halted"}),
          registry_errors.TokenRefused, "TOKEN_MALFORMED")

    # users: its classes are the common ones of their status
    exc = refusal(rpc.users.authenticate, "not-a-token")
    check(exc, users_errors.Unauthenticated, "TOKEN_MALFORMED")
    assert isinstance(exc, common.Unauthenticated) and exc.field is None


def sql_decided_refusals_arrive_typed(rpc, user, admin):
    """Refusals decided inside PostgreSQL -- wallets.move_funds behind the hold
    and release RPCs, the withdrawal state machine's trigger -- carry their
    code as data (SQLSTATE EX001, the code in the HINT: docs/errors.md) and
    reach the caller as the registered class, the code not parsed from text."""
    check(refusal(rpc.wallets.release, user, "BTC", "1", f"release:{user}"),
          wallets_errors.InsufficientLocked, "INSUFFICIENT_LOCKED")
    address = rpc.wallets.deposit_address(user, "BTC")["address"]
    rpc.wallets.credit_deposit("BTC", address, "1", uuid.uuid4().hex * 2, 1000)
    rpc.wallets.hold(user, "BTC", "0.1", f"once:{user}")
    check(refusal(rpc.wallets.hold, user, "BTC", "0.2", f"once:{user}"),
          wallets_errors.IdempotencyConflict, "IDEMPOTENCY_CONFLICT")
    rpc.wallets.release(user, "BTC", "0.1", f"once:{user}")
    withdrawal = rpc.wallets.request_withdrawal(user, "BTC", BTC_ADDRESS, "0.1", f"w:{user}")
    rpc.wallets.reject_withdrawal(withdrawal["withdrawal_id"], admin, "test")
    exc = refusal(rpc.wallets.approve_withdrawal, withdrawal["withdrawal_id"], admin)
    check(exc, wallets_errors.IllegalWithdrawalTransition, "ILLEGAL_WITHDRAWAL_TRANSITION")
    assert "rejected" in exc.message


BTC_ADDRESS = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"





# A JSON "\ud800" or "\u0000" escape decodes to a string that PostgreSQL, a
# UTF-8 log line and Keycloak cannot take: users' verbs failed with an
# uncoded UnicodeEncodeError or a database error (session 25's RPC sweep:
# these three calls). A verb's own checks answer first, with their codes and
# fields; what a verb lets through and then fails on is INVALID_TEXT.
def test_unstorable_text_is_a_coded_refusal_wherever_it_is(rpc):
    """One test (each container set costs seconds to stop)."""
    for call, args in [("get_profile", ("\ud800",)), ("list_api_keys", ("\ud800",)),
                       ("verify_request", ("\x00", "\x00", "\x00", "\x00"))]:
        exc = refusal(getattr(rpc.users, call), *args)
        check(exc, common.InvalidInput, "INVALID_TEXT")
        assert "NUL or lone surrogate" in exc.message
    for bad in ("\ud800", "a\x00b"):
        refused_wherever_it_is(rpc, bad)


def refused_wherever_it_is(rpc, bad):
    user = f"t-{uuid.uuid4().hex[:12]}"
    for call, args, kwargs in [(rpc.users.get_profile, (bad,), {}),
                               (rpc.users.verify_request, ("k" * 64, "0" * 64, bad, "1"), {}),
                               (rpc.wallets.balance, (user,), {"asset": bad}),
                               (rpc.matching.get_depth, ("BTC-USDT",), {"limit": [bad]})]:
        assert isinstance(refusal(call, *args, **kwargs), common.CodedError)
    # A verb that checks its text itself keeps its own refusal and field.
    [answer] = rpc.orders.place_orders([{"user": user, "market": "BTC-USDT", "side": "buy",
                                         "quantity": "1", "price": "1",
                                         "client_order_id": bad}])
    assert (answer["error"]["code"], answer["error"]["field"]) == (
        "INVALID_ORDER", "client_order_id"), answer
    [answer] = rpc.orders.get_orders([{bad: user}])
    assert answer["error"]["code"] == "INVALID_ORDER", answer
