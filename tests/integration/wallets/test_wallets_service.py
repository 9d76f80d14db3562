"""The wallets Nameko service on the real PostgreSQL and RabbitMQ: bad input is
a typed error with a stable code and writes nothing; errors cross RPC with
their class name and code; history pages; health; the balances event."""
import uuid

import pytest
from nameko.containers import ServiceContainer
from nameko.events import event_handler
from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.testing.services import entrypoint_hook, entrypoint_waiter, replace_dependencies

from services.wallets import errors
from services.wallets.assets import ASSETS
from services.wallets.service import WalletsService
from tests.integration.identity_kit import principal_tokens  # noqa: F401 (fixture)
from tests.integration.orders.conftest import wait_for

BTC_ADDRESS = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
ETH_ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@pytest.fixture(scope="module")
def service_config(test_settings, wallets_schema):
    config = test_settings.nameko_config()
    config["POSTGRES_DB"] = test_settings["EXCHANGE_POSTGRES_DB"]
    return config


@pytest.fixture(scope="module")
def wallets_container(service_config):
    container = ServiceContainer(WalletsService, service_config)
    if "settlement" in {dependency.attr_name for dependency in container.dependencies}:
        # the shared trade settlement queue belongs to the trading-path tests
        replace_dependencies(container, "settlement")
    container.start()
    yield container
    container.stop()


ADMIN_VERBS = {"approve_withdrawal", "reject_withdrawal", "mark_withdrawal_sent", "adjust_balance",
               "set_fee_tier"}


@pytest.fixture
def call(wallets_container, principal_tokens):
    """Call a verb in-process; the admin verbs as the session's test admin
    (their access token in the context data, services.common.principals)."""
    def call(method, *args):
        context = {"access_token": principal_tokens.person("admin")} \
            if method in ADMIN_VERBS else None
        with entrypoint_hook(wallets_container, method, context_data=context) as hook:
            return hook(*args)
    return call


def open_funded_user(call, name):
    """A user with 1 BTC available, 0.5 BTC locked and 1000 USDT locked."""
    user = f"{name}-{uuid.uuid4()}"
    call("open_accounts", user)
    for asset, amount, locked in (("BTC", "1.5", "0.5"), ("USDT", "1000", "1000")):
        address = call("deposit_address", user, asset)["address"]
        txid = uuid.uuid4().hex * 2
        call("credit_deposit", asset, address, amount, txid if asset == "BTC" else "0x" + txid, 100)
        call("hold", user, asset, locked, f"setup:{user}:{asset}")
    return user


@pytest.fixture
def alice(call, ledger):
    return open_funded_user(call, "alice")


@pytest.fixture(scope="module")
def carol(wallets_container):
    """For the bad-input cases, which write nothing, so they can share her:
    funded like alice, with a BTC deposit address and a pending withdrawal of
    0.01 BTC (so 0.9898 BTC available)."""
    def call(method, *args):
        with entrypoint_hook(wallets_container, method) as hook:
            return hook(*args)
    user = open_funded_user(call, "carol")
    address = call("deposit_address", user, "BTC")["address"]
    withdrawal_id = call("request_withdrawal", user, "BTC", BTC_ADDRESS, "0.01", f"w:{user}")["withdrawal_id"]
    yield user, address, withdrawal_id
    call("cancel_withdrawal", user, withdrawal_id)


def trade(alice, **changes):
    base = {"trade_id": f"t-{uuid.uuid4().hex}", "market": "BTC-USDT", "price": "100",
            "quantity": "0.1", "taker_side": "buy", "maker_user_id": alice, "taker_user_id": alice}
    return {**base, **changes}


GHOST = "ghost-00000000-0000-0000-0000-000000000000"

# (method, arguments, expected error); "ALICE" is the funded user (carol), "REF"
# a fresh ref, "ADDRESS" her BTC deposit address, "WITHDRAWAL" her pending withdrawal
BAD_INPUT = [
    *[("hold", ("ALICE", "BTC", amount, "REF"), errors.InvalidAmount) for amount in (
        -1, "-1", 0, "0", "0.0", "NaN", "nan", "Infinity", "-Infinity", 1.5, 0.1, "1e3", "1E-8", "abc",
        "", " 1", "0x10", None, True, [], {"amount": 1}, "9" * 50, 10 ** 40)],
    ("hold", ("ALICE", "BTC", "0.000000001", "REF"), errors.AmountTooPrecise),
    ("hold", ("ALICE", "BTC", "0.123456789", "REF"), errors.AmountTooPrecise),
    ("hold", ("ALICE", "USDT", "0.0000001", "REF"), errors.AmountTooPrecise),
    ("hold", ("ALICE", "DOGE", "1", "REF"), errors.UnknownAsset),
    ("hold", ("ALICE", "btc", "1", "REF"), errors.UnknownAsset),
    ("hold", ("ALICE", None, "1", "REF"), errors.UnknownAsset),
    ("hold", ("ALICE", "BTC", "2", "REF"), errors.InsufficientFunds),
    ("hold", (GHOST, "BTC", "1", "REF"), errors.UnknownUser),
    *[("hold", (user, "BTC", "1", "REF"), errors.InvalidId) for user in (
        "", " ", "a b", "x" * 65, None, 42, "system:fee_revenue", "../etc/passwd", "al\nice", "ü")],
    *[("hold", ("ALICE", "BTC", "1", ref), errors.InvalidId) for ref in (
        "", " ", "a b", "x" * 129, None, 7, "-leading-dash", "r\n1")],
    ("release", ("ALICE", "BTC", "0.6", "REF"), errors.InsufficientLocked),
    ("release", ("ALICE", "BTC", 0.5, "REF"), errors.InvalidAmount),
    ("balances", (GHOST,), errors.UnknownUser),
    ("balance", ("ALICE", "XRP"), errors.UnknownAsset),
    ("deposit_address", (GHOST, "BTC"), errors.UnknownUser),
    ("deposit_address", ("ALICE", "DOGE"), errors.UnknownAsset),
    ("settle_trades", ("not a list",), errors.InvalidRequest),
    ("settle_trades", ([],), errors.InvalidRequest),
    ("settle_trades", ([{}],), errors.InvalidRequest),
    ("settle_trades", (["trade"],), errors.InvalidRequest),
    ("settle_trades", ([{"TRADE": "ALICE", "extra": 1}],), errors.InvalidRequest),
    ("settle_trades", ([{"TRADE": "ALICE", "market": "DOGE-USDT"}],), errors.UnknownMarket),
    ("settle_trades", ([{"TRADE": "ALICE", "price": 100.5}],), errors.InvalidAmount),
    ("settle_trades", ([{"TRADE": "ALICE", "price": "0"}],), errors.InvalidAmount),
    ("settle_trades", ([{"TRADE": "ALICE", "price": "NaN"}],), errors.InvalidAmount),
    ("settle_trades", ([{"TRADE": "ALICE", "quantity": "-0.1"}],), errors.InvalidAmount),
    ("settle_trades", ([{"TRADE": "ALICE", "quantity": "0.000000001"}],), errors.AmountTooPrecise),
    ("settle_trades", ([{"TRADE": "ALICE", "price": "0.001", "quantity": "0.00000001"}],),
     errors.AmountTooPrecise),
    ("settle_trades", ([{"TRADE": "ALICE", "taker_side": "short"}],), errors.InvalidRequest),
    ("settle_trades", ([{"TRADE": "ALICE", "trade_id": ""}],), errors.InvalidId),
    ("settle_trades", ([{"TRADE": "ALICE", "trade_id": -1}],), errors.InvalidId),
    ("settle_trades", ([{"TRADE": "ALICE", "trade_id": 1.5}],), errors.InvalidId),
    ("settle_trades", ([{"TRADE": "ALICE", "maker_user_id": "no way"}],), errors.InvalidId),
    ("settle_trades", ([{"TRADE": "ALICE", "maker_user_id": GHOST}],), errors.UnknownUser),
    ("settle_trades", ([{"TRADE": "ALICE", "quantity": "0.6"}],), errors.InsufficientLocked),
    ("settle_trades", ([{"TRADE": "ALICE"}, {"TRADE": "ALICE", "quantity": "1"}],),
     errors.InsufficientLocked),
    ("credit_deposit", ("BTC", "not-an-address", "1", "ab" * 32, 3), errors.InvalidAddress),
    ("credit_deposit", ("BTC", ETH_ADDRESS, "1", "ab" * 32, 3), errors.InvalidAddress),
    ("credit_deposit", ("BTC", BTC_ADDRESS, "1", "ab" * 32, 3), errors.UnknownAddress),
    ("credit_deposit", ("BTC", "ADDRESS", "1", "xyz", 3), errors.InvalidId),
    ("credit_deposit", ("BTC", "ADDRESS", "1", "0x" + "ab" * 32, 3), errors.InvalidId),
    ("credit_deposit", ("BTC", "ADDRESS", "-1", "ab" * 32, 3), errors.InvalidAmount),
    ("credit_deposit", ("BTC", "ADDRESS", 1.0, "ab" * 32, 3), errors.InvalidAmount),
    *[("credit_deposit", ("BTC", "ADDRESS", "1", "ab" * 32, confirmations), errors.InvalidRequest)
      for confirmations in (-1, "12", 1.5, None, True)],
    ("request_withdrawal", ("ALICE", "BTC", ETH_ADDRESS, "0.01", "REF"), errors.InvalidAddress),
    ("request_withdrawal", ("ALICE", "ETH", BTC_ADDRESS, "0.01", "REF"), errors.InvalidAddress),
    ("request_withdrawal", ("ALICE", "BTC", BTC_ADDRESS, 0.01, "REF"), errors.InvalidAmount),
    ("request_withdrawal", ("ALICE", "BTC", BTC_ADDRESS, "0.0001", "REF"), errors.WithdrawalBelowMinimum),
    ("request_withdrawal", ("ALICE", "BTC", BTC_ADDRESS, "0.9999", "REF"), errors.InsufficientFunds),
    ("request_withdrawal", ("ALICE", "BTC", BTC_ADDRESS, "11", "REF"), errors.WithdrawalLimitExceeded),
    ("request_withdrawal", ("ALICE", "BTC", BTC_ADDRESS, "0.01", None), errors.InvalidId),
    *[("approve_withdrawal", (withdrawal_id, "ADMIN"), errors.InvalidId)
      for withdrawal_id in ("1", 0, -5, 1.5, True, None, 2 ** 63)],
    ("approve_withdrawal", (2 ** 62, "ADMIN"), errors.WithdrawalNotFound),
    ("approve_withdrawal", ("WITHDRAWAL", ""), errors.InvalidId),
    ("reject_withdrawal", ("WITHDRAWAL", "ADMIN", ""), errors.InvalidRequest),
    ("mark_withdrawal_sent", ("WITHDRAWAL", "ab" * 32, "ADMIN"), errors.IllegalWithdrawalTransition),
    ("mark_withdrawal_sent", ("WITHDRAWAL", 12345, "ADMIN"), errors.InvalidRequest),
    # Issue 11's hostile values: Unicode digits, blanks, underscores, exponents
    # and NUL bytes are refused before anything is read or written.
    ("mark_withdrawal_sent", ("WITHDRAWAL", "ab\x00cd", "ADMIN"), errors.InvalidRequest),
    *[("hold", ("ALICE", "BTC", amount, "REF"), errors.InvalidAmount)
      for amount in ("١", "  0.01 ", "1_000", "1e10000000", "9" * 100_000, 10 ** 30)],
    ("credit_deposit", ("BTC", "ADDRESS", "١", "ab" * 32, 3), errors.InvalidAmount),
    ("adjust_balance", ("ALICE", "BTC", "1", "REF", "nul\x00reason"), errors.InvalidRequest),
    ("reject_withdrawal", ("WITHDRAWAL", "ADMIN", "a\x00"), errors.InvalidRequest),
    ("open_accounts", ("user\x00id",), errors.InvalidId),
    *[("balances_of", (users,), errors.InvalidRequest)
      for users in ([], "ALICE", None, {"u": 1}, ["ALICE"] * 1001)],
    *[("balances_of", (users,), errors.InvalidId)
      for users in (["ALICE", None], ["ALICE", "user\x00id"], [["ALICE"]], [7])],
    ("cancel_withdrawal", (GHOST, "WITHDRAWAL"), errors.WithdrawalNotFound),
    *[("ledger", ("ALICE", "BTC", cursor, 10), errors.InvalidId) for cursor in ("abc", "0", "-1", 5, "1.5")],
    *[("ledger", ("ALICE", "BTC", None, limit), errors.InvalidRequest) for limit in (0, 1000, "10", 2.5)],
    ("ledger", (GHOST, "BTC", None, 10), errors.UnknownUser),
    ("set_fee_tier", ("ALICE", "gold"), errors.UnknownFeeTier),
    *[("trade_fees", ("ALICE", market, []), errors.UnknownMarket)
      for market in ("BTC/USDT", "NOPE-USDT", None, ["BTC-USDT"])],
    *[("trade_fees", ("ALICE", "BTC-USDT", ids), errors.InvalidRequest)
      for ids in ("t-1", None, {"t-1": 1}, ["t-1"] * 1001)],
    *[("trade_fees", ("ALICE", "BTC-USDT", ids), errors.InvalidId)
      for ids in ([None], ["t\x00"], [-1], [["t-1"]])],
    ("trade_fees", ("user\x00id", "BTC-USDT", []), errors.InvalidId),
    *[("fee_rates", (user,), errors.InvalidId) for user in ("user\x00id", None, "", ["ALICE"])],
    ("set_fee_tier", (GHOST, "vip1"), errors.UnknownUser),
    ("adjust_balance", ("ALICE", "BTC", "0", "REF", "typo"), errors.InvalidAmount),
    ("adjust_balance", ("ALICE", "BTC", "1", "REF", ""), errors.InvalidRequest),
    ("adjust_balance", ("ALICE", "BTC", "-5", "REF", "too much"), errors.InsufficientFunds),
    ("adjust_balance", ("ALICE", "BTC", "1000000", "REF", "more than the exchange earned"),
     errors.InsufficientFunds),
]


def resolve(value, alice, address, withdrawal_id, admin=None):
    if value == "ADMIN":
        return admin
    if value == "ALICE":
        return alice
    if value == "REF":  # fresh: the database persists and refs are global
        return f"bad-input:{uuid.uuid4()}"
    if value == "ADDRESS":
        return address
    if value == "WITHDRAWAL":
        return withdrawal_id
    if isinstance(value, list):
        return [resolve(item, alice, address, withdrawal_id, admin) for item in value]
    if isinstance(value, dict) and "TRADE" in value:
        return trade(alice, **{k: v for k, v in value.items() if k != "TRADE"})
    return value


@pytest.mark.parametrize("method, arguments, error", BAD_INPUT,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(BAD_INPUT)])
def test_bad_input_is_a_typed_error_and_writes_nothing(call, carol, ledger, footprint, method, arguments,
                                                      error, principal_tokens):
    user, address, withdrawal_id = carol
    admin = principal_tokens.username("admin")
    before = footprint(user)
    with pytest.raises(error) as raised:
        call(method, *[resolve(a, user, address, withdrawal_id, admin) for a in arguments])
    assert type(raised.value) is error
    assert str(raised.value).startswith(f"{error.code}: ")
    assert footprint(user) == before


def test_error_codes_are_unique_and_stable():
    codes = [cls.code for cls in errors.ALL_ERRORS]
    assert len(codes) == len(set(codes))
    assert {"INSUFFICIENT_FUNDS", "INVALID_AMOUNT", "AMOUNT_TOO_PRECISE", "UNKNOWN_ASSET", "UNKNOWN_USER",
            "UNKNOWN_ADDRESS", "INVALID_ID", "ILLEGAL_WITHDRAWAL_TRANSITION",
            "IDEMPOTENCY_CONFLICT"} <= set(codes)


def test_over_rpc_the_caller_gets_the_typed_error_and_the_code(wallets_container, service_config, alice):
    with ServiceRpcProxy("wallets", service_config, timeout=10) as wallets:
        assert wallets.health()["status"] == "ok"
        with pytest.raises(errors.InvalidAmount) as raised:
            wallets.hold(alice, "BTC", 0.5, "float-amount")
        assert str(raised.value).startswith("INVALID_AMOUNT: ")
        with pytest.raises(errors.InsufficientFunds) as raised:
            wallets.hold(alice, "BTC", "5", f"too-much:{alice}")
        assert raised.value.code == "INSUFFICIENT_FUNDS"
        held = wallets.hold(alice, "BTC", "0.25", f"ok:{alice}")
        assert wallets.hold(alice, "BTC", "0.25", f"ok:{alice}") == held


def test_balances_of_reads_several_users_as_balances_reads_each(call, alice, carol):
    """One read for the live push: each user's balances as ``balances`` gives
    them; a user without accounts is left out, a repeated one read once."""
    carol_user = carol[0]
    found = call("balances_of", [alice, GHOST, carol_user, alice])["balances"]
    assert set(found) == {alice, carol_user}
    for user in (alice, carol_user):
        assert found[user] == call("balances", user)["balances"]
    assert found[alice]["BTC"] == {"available": "1.00000000", "locked": "0.50000000"}


def test_history_pages_cover_every_entry_once_newest_first(call, alice):
    for i in range(5):
        call("release", alice, "BTC", "0.01", f"page:{alice}:{i}")
    seen, cursor, pages = [], None, 0
    while True:
        page = call("ledger", alice, "BTC", cursor, 3)
        seen.extend(entry["transaction_id"] for entry in page["entries"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # deposit, setup hold, five releases
    assert len(seen) == 7 and len(set(seen)) == 7 and seen == sorted(seen, reverse=True)
    assert pages == 3
    newest = call("ledger", alice, "BTC", None, 1)["entries"][0]
    assert newest["type"] == "release" and newest["available_delta"] == "0.01000000"
    assert newest["locked_delta"] == "-0.01000000" and newest["details"] == {"ref": f"page:{alice}:4"}


def test_a_settled_trade_shows_in_both_histories_without_the_counterparty(call, alice):
    bob = f"bob-{uuid.uuid4()}"
    call("open_accounts", bob)
    address = call("deposit_address", bob, "USDT")["address"]
    call("credit_deposit", "USDT", address, "500", "0x" + uuid.uuid4().hex * 2, 12)
    call("hold", bob, "USDT", "500", f"bob:{bob}")
    result = call("settle_trades", [trade(alice, taker_user_id=bob, quantity="0.2")])
    (settled,) = result["trades"]
    alice_line = call("ledger", alice, "BTC", None, 1)["entries"][0]
    bob_line = call("ledger", bob, "BTC", None, 1)["entries"][0]
    assert alice_line["transaction_id"] == bob_line["transaction_id"] == settled["transaction_id"]
    assert alice_line["locked_delta"] == "-0.20000000"
    assert bob_line["available_delta"] == "0.19960000" and bob_line["details"]["fee"] == "0.00040000"
    assert bob not in str(alice_line) and alice not in str(bob_line)


class BalanceListener:
    name = "wallets_balance_listener"

    @event_handler("wallets", "balances_changed")
    def on_balances_changed(self, payload):
        return payload


def test_a_hold_announces_which_balances_changed(wallets_container, service_config, call, ledger,
                                                 container_factory, wallets_pool):
    """The hold's announcement comes after the user's set-up ones. The relay
    publishes a read's announcements as one message (merged: each change
    once), so the set-up's are first published (the outbox holds none of the
    user's rows) and received (a marker event dispatched after them, in the
    same queue, arrives); then the hold's is the user's next message."""
    listener = container_factory(BalanceListener, service_config)
    listener.start()
    marker = f"marker-{uuid.uuid4()}"
    alice = open_funded_user(call, "alice")

    def outbox_rows_of_alice():
        with wallets_pool.connection() as conn:
            return conn.execute("SELECT count(*) FROM outbox WHERE stream = 'wallets' "
                                "AND payload::text LIKE %s", (f"%{alice}%",)).fetchone()[0]
    wait_for(lambda: not outbox_rows_of_alice(), 10, "the set-up's announcements published")

    def names(user):
        return lambda worker_ctx, result, exc_info: bool(result) and any(
            change["user"] == user for change in result["changes"])
    with entrypoint_waiter(listener, "on_balances_changed", timeout=10, callback=names(marker)):
        event_dispatcher(service_config)(
            "wallets", "balances_changed",
            {"event_version": 1, "changes": [{"user": marker, "asset": "BTC"}]})
    with entrypoint_waiter(listener, "on_balances_changed", timeout=10,
                           callback=names(alice)) as waited:
        with entrypoint_hook(wallets_container, "hold") as hold:
            hold(alice, "BTC", "0.1", f"event:{alice}")
    payload = waited.get()
    assert payload["event_version"] == 1
    assert [(c["user"], c["asset"]) for c in payload["changes"] if c["user"] == alice] == [
        (alice, "BTC")]


def test_health_checks_the_database(call):
    assert call("health") == {"service": "wallets", "status": "ok", "database": "ok",
                              "parked_trades": 0}


def test_audit_over_the_service_is_clean(call):
    assert call("audit") == []
    assert ASSETS  # the registry the audit checks system accounts against


def test_the_periodic_audit_runs_when_the_service_starts(service_config):
    """The audit's timer is eager: a wallets process started after a crash
    checks the ledger at once, not a timer interval (60 s) later."""
    container = ServiceContainer(WalletsService, service_config)
    replace_dependencies(container, "settlement")
    try:
        with entrypoint_waiter(container, "periodic_audit", timeout=30) as result:
            container.start()
        assert result.get() is None
    finally:
        container.stop()


def test_announcements_committed_together_reach_a_listener_as_one_message(
        wallets_container, service_config, container_factory, wallets_pool):
    """The service's relay merges the balances_changed rows of one read
    (services.wallets.announcements): two announcements committed in one
    transaction are read together and arrive as ONE message naming both."""
    listener = container_factory(BalanceListener, service_config)
    listener.start()
    first, second = f"merge-{uuid.uuid4()}", f"merge-{uuid.uuid4()}"

    def names_first(worker_ctx, result, exc_info):
        return bool(result) and any(change["user"] == first for change in result["changes"])
    with entrypoint_waiter(listener, "on_balances_changed", timeout=10,
                           callback=names_first) as waited:
        with wallets_pool.connection() as conn, conn.transaction():
            for user in (first, second):
                conn.execute("SELECT wallets.announce_balances_changed(%s::jsonb)",
                             (f'[{{"user": "{user}", "asset": "BTC"}}]',))
    payload = waited.get()
    assert payload["event_version"] == 1
    assert [c["user"] for c in payload["changes"] if c["user"] in (first, second)] == sorted(
        (first, second))
