"""Private pushes reach only their user, and only a valid token opens them.

* Two traders trade with each other while a third trader and an anonymous
  client listen: each trader's connection gets only its own order updates,
  fills and balances; the third's private stream and every public stream get
  nothing that names either trader or their orders.
* A forged token (signed with another key), a malformed one and an expired
  one are refused at connect with their codes; a connection whose token
  expires while it is open is told and closed. Short-lived tokens come from a
  Keycloak client of the test's own (access tokens living a few seconds),
  removed at the end.
"""
from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common.config import load_settings
from tests.e2e.push import kit

pytestmark = pytest.mark.timeout(180)

MARKET = "BTC-USDT"
QUANTITY = "0.0050"
SHORT_LIFESPAN_S = 3


@pytest.fixture(scope="module")
def settings():
    return load_settings()


def private_ids(listener: kit.Listener) -> tuple[set, set]:
    """The user ids and order ids named in everything a connection received."""
    users, orders = set(), set()
    for event, data in listener.received:
        if not isinstance(data, dict):
            continue
        for key in ("user_id", "maker_user_id", "taker_user_id"):
            if data.get(key):
                users.add(data[key])
        for key in ("order_id", "maker_order_id", "taker_order_id"):
            if data.get(key) is not None:
                orders.add(data[key])
    return users, orders


def test_private_events_reach_only_their_user(settings):
    buyer = kit.new_trader(settings, {"USDT": "1000"})
    seller = kit.new_trader(settings, {"BTC": "1"})
    bystander = kit.new_trader(settings, {"USDT": "10"})
    url = settings.gateway_url
    listeners = {who.user_id: kit.Listener(url, kit.access_token(settings, who.username)).connect()
                 for who in (buyer, seller, bystander)}
    public = kit.Listener(url).connect()
    try:
        for channel in ("trades", "depth", "ticker"):
            assert public.call("subscribe", {"channel": channel, "market": MARKET})["ok"]
            assert listeners[bystander.user_id].call(
                "subscribe", {"channel": channel, "market": MARKET})["ok"]
        price = kit.inside_spread(settings, MARKET)
        with kit.rpc_proxy(settings) as rpc:
            bid = rpc.orders.place_order(buyer.user_id, MARKET, "buy", "limit", quantity=QUANTITY,
                                         price=price, post_only=True)
            ask = rpc.orders.place_order(seller.user_id, MARKET, "sell", "limit",
                                         quantity=QUANTITY, price=price, time_in_force="IOC")
        mine = {buyer.user_id: bid["order_id"], seller.user_id: ask["order_id"]}
        for user, order_id in mine.items():
            got = listeners[user]
            assert got.wait_for(lambda e, d: e == "fill" and d["order_id"] == order_id)
            assert got.wait_for(lambda e, d: e == "order" and d.get("order_id") == order_id)
            assert got.wait_for(lambda e, d: e == "balances")
        # The public trade arrived too: everything private had time to leak.
        assert public.wait_for(lambda e, d: e == "trades"
                               and any(t["price"] == price for t in d["trades"]))
        for user, order_id in mine.items():
            users, orders = private_ids(listeners[user])
            assert users == {user}, f"{user}'s connection saw {users}"
            other = next(o for u, o in mine.items() if u != user)
            assert other not in {o for e, d in listeners[user].received
                                 if e in ("order", "fill") for o in [d.get("order_id")]}
        for quiet in (listeners[bystander.user_id], public):
            users, _orders = private_ids(quiet)
            assert users <= {bystander.user_id}, f"leaked {users}"
            assert not [e for e, _d in quiet.received if e in ("order", "fill")] \
                or quiet is not public
            assert not [d for e, d in quiet.received if e in ("order", "fill")
                        and d.get("order_id") in mine.values()]
    finally:
        for listener in [*listeners.values(), public]:
            listener.close()


def refusal(url: str, token: str) -> dict:
    listener = kit.Listener(url, token, events=())
    refused = {}
    listener.client.on("connect_error",
                       lambda data=None: refused.update((data or {}).get("data") or {}))
    with pytest.raises(Exception):
        listener.connect()
    listener.close()
    return refused


def test_forged_and_malformed_tokens_are_refused(settings):
    trader = kit.new_trader(settings)
    genuine = kit.access_token(settings, trader.username)
    header = jwt.get_unverified_header(genuine)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": header["kid"]})
    assert refusal(settings.gateway_url, forged)["code"] == "TOKEN_SIGNATURE"
    # The genuine token with its payload swapped for another subject's.
    head, _payload, signature = genuine.split(".")
    swapped = base64.urlsafe_b64encode(json.dumps({**claims, "sub": str(uuid.uuid4())})
                                       .encode()).rstrip(b"=").decode()
    assert refusal(settings.gateway_url, f"{head}.{swapped}.{signature}")["code"] \
        == "TOKEN_SIGNATURE"
    assert refusal(settings.gateway_url, "not-a-token")["code"] == "TOKEN_MALFORMED"
    # And the genuine one is let in with its private stream.
    welcome = kit.Listener(settings.gateway_url, genuine).connect()
    try:
        assert welcome.wait_for(lambda e, d: e == "welcome")[1]["user_id"] == trader.user_id
    finally:
        welcome.close()


@pytest.fixture
def short_lived_client(settings):
    """A confidential client of the realm whose access tokens live
    SHORT_LIFESPAN_S seconds, with the API audience; deleted afterwards."""
    base = settings.keycloak_url
    admin = requests.post(f"{base}/realms/master/protocol/openid-connect/token", data={
        "grant_type": "password", "client_id": "admin-cli",
        "username": settings["EXCHANGE_KEYCLOAK_ADMIN"],
        "password": settings["EXCHANGE_KEYCLOAK_ADMIN_PASSWORD"]}, timeout=10).json()
    headers = {"Authorization": f"Bearer {admin['access_token']}"}
    clients = f"{base}/admin/realms/{settings['EXCHANGE_KEYCLOAK_REALM']}/clients"
    client_id, secret = f"push-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    created = requests.post(clients, headers=headers, timeout=10, json={
        "clientId": client_id, "enabled": True, "publicClient": False, "secret": secret,
        "standardFlowEnabled": False, "directAccessGrantsEnabled": True,
        "attributes": {"access.token.lifespan": str(SHORT_LIFESPAN_S)},
        "protocolMappers": [{"name": "audience", "protocol": "openid-connect",
                             "protocolMapper": "oidc-audience-mapper",
                             "config": {"included.custom.audience":
                                        settings["EXCHANGE_KEYCLOAK_AUDIENCE"],
                                        "access.token.claim": "true"}}]})
    assert created.status_code == 201, created.text
    location = created.headers["Location"]

    def token(username: str) -> str:
        answer = requests.post(f"{settings.keycloak_issuer}/protocol/openid-connect/token", data={
            "grant_type": "password", "client_id": client_id, "client_secret": secret,
            "username": username, "password": kit.PASSWORD, "scope": "openid"}, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()["access_token"]

    yield token
    requests.delete(location, headers=headers, timeout=10)


def wait_until_expired(token: str) -> None:
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    for _ in range(4 * (SHORT_LIFESPAN_S + 5)):
        if time.time() > expires + 1:
            return
        time.sleep(0.25)
    raise AssertionError("the short-lived token did not expire")


def test_expired_tokens_are_refused_and_open_connections_closed(settings, short_lived_client):
    trader = kit.new_trader(settings)
    # Open with a fresh token: told and closed when it expires.
    open_one = kit.Listener(settings.gateway_url, short_lived_client(trader.username)).connect()
    try:
        assert open_one.wait_for(lambda e, d: e == "welcome")
        told = open_one.wait_for(lambda e, d: e == "error" and d["code"] == "TOKEN_EXPIRED",
                                 timeout=SHORT_LIFESPAN_S + 15)
        assert told, open_one.received
        assert open_one.closed_by_the_gateway()
    finally:
        open_one.close()
    stale = short_lived_client(trader.username)
    wait_until_expired(stale)
    assert refusal(settings.gateway_url, stale)["code"] == "TOKEN_EXPIRED"


def test_refreshed_token_keeps_the_connection(settings, short_lived_client):
    trader = kit.new_trader(settings)
    listener = kit.Listener(settings.gateway_url, short_lived_client(trader.username)).connect()
    try:
        assert listener.call("authenticate", {"token": short_lived_client(trader.username)})["ok"]
        other = kit.new_trader(settings)
        refused = listener.call("authenticate", {"token": short_lived_client(other.username)})
        assert refused["code"] == "TOKEN_SUBJECT"
    finally:
        listener.close()


def test_a_frozen_user_is_disconnected_and_refused(settings, operator_token):
    trader = kit.new_trader(settings)
    token = kit.access_token(settings, trader.username)
    listener = kit.Listener(settings.gateway_url, token).connect()
    try:
        assert listener.wait_for(lambda e, d: e == "welcome")
        with kit.rpc_proxy(settings) as rpc:
            rpc.users.freeze_user(operator_token, trader.user_id, "push test")
        assert listener.wait_for(lambda e, d: e == "account" and d["state"] == "frozen",
                                 timeout=30), listener.received
        assert listener.closed_by_the_gateway()
    finally:
        listener.close()
    assert refusal(settings.gateway_url, token)["code"] == "USER_FROZEN"
