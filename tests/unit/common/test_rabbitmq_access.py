"""The RabbitMQ permissions as rendered (stack/rabbitmq_access.py), checked
without a broker; tests/integration/common/test_rabbitmq_permissions.py checks
that the broker enforces them."""
import re
import uuid

import pytest

from services.common.config import (COMMANDS_EXCHANGE, RPC_EXCHANGE, amqp_principals,
                                    load_settings, service_names)
from stack import rabbitmq_access


@pytest.fixture(scope="module")
def definitions():
    return rabbitmq_access.definitions(load_settings())


def permission(definitions, user, vhost="exchange"):
    return next(p for p in definitions["permissions"] if p["user"] == user and p["vhost"] == vhost)


def topic(definitions, user, exchange, vhost="exchange"):
    return next((t for t in definitions["topic_permissions"]
                 if t["user"] == user and t["exchange"] == exchange and t["vhost"] == vhost), None)


def allows(pattern: str, name: str) -> bool:
    return re.search(pattern, name) is not None


def test_every_principal_has_a_user_and_permissions_in_both_vhosts(definitions):
    settings = load_settings()
    users = {u["name"]: u for u in definitions["users"]}
    assert set(users) == set(amqp_principals()) | {settings["EXCHANGE_RABBITMQ_USER"]}
    assert users[settings["EXCHANGE_RABBITMQ_USER"]]["tags"] == "administrator"
    assert all(users[p]["tags"] == "" and users[p]["password"] for p in amqp_principals())
    for vhost in ("exchange", "exchange_test"):
        for principal in amqp_principals():
            assert permission(definitions, principal, vhost)
            assert topic(definitions, principal, RPC_EXCHANGE, vhost), principal


def test_only_orders_and_matching_send_engine_commands(definitions):
    for principal in amqp_principals():
        write = permission(definitions, principal)["write"]
        # Nobody but the operator may publish to the default exchange.
        assert not allows(write, "amq.default") and not allows(write, "")
        assert allows(write, COMMANDS_EXCHANGE) == (principal in ("orders", "matching")), principal


def test_the_rpc_exchange_is_a_per_verb_allow_list(definitions):
    reply = str(uuid.uuid4())
    gateway = topic(definitions, "gateway", RPC_EXCHANGE)["write"]
    assert allows(gateway, "orders.place_order") and allows(gateway, "wallets.balances")
    assert allows(gateway, reply)
    assert not allows(gateway, "wallets.credit_deposit")
    watcher = topic(definitions, "deposit_watcher", RPC_EXCHANGE)["write"]
    assert allows(watcher, "wallets.credit_deposit") and not allows(watcher, "orders.place_order")
    for name in service_names():
        rules = topic(definitions, name, RPC_EXCHANGE)
        assert allows(rules["write"], reply), name
        assert not allows(rules["write"], "orders.place_order"), name
        assert not allows(rules["write"], "wallets.credit_deposit"), name
        assert allows(rules["read"], f"{name}.*") and allows(rules["read"], reply), name
        for other in set(service_names()) - {name}:
            assert not allows(rules["read"], f"{other}.*"), (name, other)


def test_a_run_with_a_test_namespace_of_its_own_gets_its_vhost_and_permissions_too():
    """EXCHANGE_TEST_SUFFIX gives a test run a namespace of its own (parallel
    runs in one vhost answered each other's RPCs); `make up` with it set
    prepares it beside _test, with the same permissions."""
    settings = load_settings({"EXCHANGE_TEST_SUFFIX": "_test_a1"})
    assert rabbitmq_access.vhosts(settings) == ["exchange", "exchange_test", "exchange_test_a1"]
    rendered = rabbitmq_access.definitions(settings)
    for principal in amqp_principals():
        assert permission(rendered, principal, "exchange_test_a1") == {
            **permission(rendered, principal, "exchange_test"), "vhost": "exchange_test_a1"}
    assert load_settings({}).test_suffixes == ["_test"]
    for bad in ("_demo", "_test_A", "_test_", "_test_a/b", "_test_" + "x" * 17):
        with pytest.raises(ValueError):
            load_settings({"EXCHANGE_TEST_SUFFIX": bad}).test_suffix
