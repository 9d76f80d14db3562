"""One event vocabulary: every event that crosses a service boundary is
defined once in services/common/events.py, every consumer binds to names
defined there, producers build their payloads with those definitions, and
docs/events.md names every one."""
import ast
import importlib

import pytest

from services.common import events
from services.common.config import REPO_ROOT
from services.common.consumer import BatchConsumerProvider

# Modules whose consumers bind to another service's events.
CONSUMER_MODULES = ("services.wallets.settlement", "services.orders.providers",
                    "services.marketdata.providers")
AUDIENCES = {name for name, value in vars(events).items()
             if name.endswith("_AUDIENCE") and isinstance(value, str)}
DEFINED = set(events.ALL) | {getattr(events, name) for name in AUDIENCES}


def test_every_consumer_binds_to_defined_events():
    bound = {}
    for name in CONSUMER_MODULES:
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, BatchConsumerProvider) \
                    and cls.__module__ == name:
                bound[f"{name}.{cls.__name__}"] = set(cls.routing_keys)
    from gateway.bridge import BINDINGS
    bound["gateway.bridge"] = {key for keys in BINDINGS.values() for key in keys}
    from services.common import catalogue
    bound["services.common.catalogue"] = set(catalogue.EVENTS)
    assert len(bound) >= 5, bound
    undefined = {where: keys - DEFINED for where, keys in bound.items() if keys - DEFINED}
    assert not undefined, f"bound to events services/common/events.py does not define: {undefined}"


def test_every_event_the_users_service_publishes_is_defined():
    """users' enqueue builds each payload with its definition: a name it
    publishes must be defined, and the payloads it builds must carry the
    fields (checked on the account transitions' own payloads)."""
    from services.users import accounts
    source = (REPO_ROOT / "services" / "users" / "service.py").read_text()
    published = {node.args[0].value for node in ast.walk(ast.parse(source))
                 if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "enqueue"
                 and node.args and isinstance(node.args[0], ast.Constant)}
    published |= {event for _, _, event in accounts._TRANSITIONS.values()}
    assert {"user_signed_up", "user_frozen", "api_key_revoked"} <= published
    assert published <= set(events.ALL), published - set(events.ALL)

    account = accounts.Account("u-1", accounts.AccountState.ACTIVE)
    for action in ("freeze", "close"):
        _, event = accounts.transition(account, action, "admin", "a reason", 1)
        built = events.ALL[event.name].build(**event.payload)
        assert events.ALL[event.name].parse(built)[events.VERSION_KEY] == 1


def test_a_consumer_refuses_an_event_of_a_newer_version_or_missing_a_field():
    frozen = {"user_id": "u", "state": "frozen", "previous_state": "active", "reason": "r",
              "by": "admin", "at": 1}
    assert events.USER_FROZEN.parse(events.USER_FROZEN.build(**frozen))["user_id"] == "u"
    for bad in ({**frozen, events.VERSION_KEY: 2}, {k: v for k, v in frozen.items()
                                                   if k != "user_id"}):
        try:
            events.USER_FROZEN.parse(bad)
        except events.UnsupportedEvent:
            continue
        raise AssertionError(f"accepted {bad}")


def test_docs_events_md_names_every_event():
    text = (REPO_ROOT / "docs" / "events.md").read_text()
    missing = sorted(name for name in events.ALL if f"`{name}`" not in text)
    assert not missing, f"docs/events.md lacks {missing}"


TRADE = {"market": "BTC-USDT", "seq": 12, "trade_id": "BTC-USDT-3", "price": "30000.00",
         "quantity": "0.0100", "quote_quantity": "300.000000", "taker_side": "sell",
         "maker_order_id": 7, "maker_user_id": "u-maker", "taker_order_id": 9,
         "taker_user_id": "u-taker", "executed_at": 1_700_000_000_000}


def test_a_trade_is_decoded_by_one_function():
    trade = events.trade_executed(TRADE)
    assert trade.trade_id == "BTC-USDT-3" and trade.sides() == ((7, "u-maker", True),
                                                                (9, "u-taker", False))
    assert events.trade_executed({**TRADE, "trade_id": 17}).trade_id == "17"
    for field, value in (("seq", 0), ("seq", True), ("price", 30000.0), ("taker_side", "both"),
                         ("maker_user_id", None), ("trade_id", ""), ("executed_at", "now"),
                         ("market", "X" * 65)):
        with pytest.raises(events.UnsupportedEvent):
            events.trade_executed({**TRADE, field: value})
    with pytest.raises(events.UnsupportedEvent):
        events.trade_executed({k: v for k, v in TRADE.items() if k != "quote_quantity"})


def test_every_trade_consumer_decodes_through_it():
    """orders' fills, wallets' settlement, marketdata's ingest and the push
    bridge call events.trade_executed; none reads a trade's fields itself."""
    for path in ("services/orders/providers.py", "services/wallets/settlement.py",
                 "services/marketdata/schemas.py", "gateway/bridge.py"):
        source = (REPO_ROOT / path).read_text()
        assert "trade_executed(" in source, path
        assert 'event["maker_user_id"]' not in source and 'trade["maker_user_id"]' not in source
