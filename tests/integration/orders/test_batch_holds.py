"""The holds of an accepted batch (issues 18 and 12): place_orders_tx takes
every inserted order's hold in ONE call of wallets' set-based movement, so a
batch writes one posting statement and ONE balances_changed outbox row
(each hold used to write its own, in a subtransaction of its own); each
order is still placed or refused on its own, as it would be alone after the
ones before it.

place_orders_tx is called in a transaction of the test's, with the orders
service's search path (its tables first), and rolled back: nothing is left
open that the engine never heard of."""
import re
import uuid
from decimal import Decimal

import psycopg
import pytest
from psycopg.types.json import Jsonb

from services.common.postgres import make_pool
from services.wallets.assets import ASSETS
from services.wallets.providers import PostgresLedger

PLACE = ("SELECT t.item, t.outcome, t.refusal_code, t.refusal, (t.placed).order_id "
         "FROM place_orders_tx(%s) t ORDER BY t.item")
ANNOUNCED = ("SELECT id, payload FROM outbox WHERE stream = 'wallets' "
             "AND routing_key = 'balances_changed' AND id > %s ORDER BY id")
LAST_OUTBOX_ROW = "SELECT coalesce(max(id), 0) FROM outbox"


@pytest.fixture(scope="module")
def ledger(test_settings):
    pool = make_pool(test_settings, min_size=1, max_size=2, name="orders-batch-holds")
    ledger = PostgresLedger(pool, group_commit=False)
    ledger.ensure_system_accounts()
    yield ledger
    assert ledger.audit() == [], "ledger audit after the tests"
    pool.close()


def funded(ledger, balances: dict) -> str:
    user = f"t-{uuid.uuid4().hex[:12]}"
    ledger.open_accounts(user)
    for code, units in balances.items():
        asset = ASSETS[code]
        txid = uuid.uuid4().hex * 2
        ledger.credit_deposit(asset, ledger.deposit_address(user, asset)["address"],
                              int(Decimal(units).scaleb(asset.scale)),
                              txid if asset.chain == "bitcoin" else "0x" + txid,
                              asset.confirmations)
    return user


def limit(user, side, price, quantity, **extra) -> dict:
    """An order row as the service hands it to place_orders_tx."""
    price, quantity = Decimal(price), Decimal(quantity)
    return {"user_id": user, "market": "BTC-USDT", "client_order_id": None, "side": side,
            "order_type": "limit", "price": str(price), "quantity": str(quantity),
            "quote_amount": None, "time_in_force": "GTC", "post_only": False, "stp_mode": None,
            "hold_asset": "USDT" if side == "buy" else "BTC",
            "hold_amount": str(price * quantity if side == "buy" else quantity),
            "cap_price": None, "cap_quantity": None, "request_id": None, **extra}


def place(conn, rows) -> list[tuple]:
    conn.execute("SET LOCAL search_path = orders, public")
    return conn.execute(PLACE, (Jsonb(rows),)).fetchall()


def announced(conn, since: int, users) -> list[dict]:
    """The balances_changed payloads written after outbox row ``since`` that
    name one of ``users`` (fresh ids: nobody else's writes), this
    transaction's own included."""
    return [payload for _, payload in conn.execute(ANNOUNCED, (since,)).fetchall()
            if {change["user"] for change in payload["changes"]} & set(users)]


def held(conn, user, asset) -> tuple:
    return conn.execute("SELECT coalesce(sum((details->>'amount')::numeric), 0) "
                        "FROM wallets.transactions WHERE type = 'hold' "
                        "AND details->>'user' = %s AND details->>'asset' = %s",
                        (user, asset)).fetchone()[0]


def test_a_batch_of_holds_is_one_balances_changed_and_each_order_its_own_answer(
        ledger, test_settings):
    """Two orders of one user where only the first fits: the second is
    refused with the single-order path's code and text; the others are
    placed; one balances_changed names every account held from."""
    rich, poor, seller = (funded(ledger, {"USDT": "150"}), funded(ledger, {"USDT": "150"}),
                          funded(ledger, {"BTC": "1"}))
    rows = [limit(rich, "buy", "100", "1"), limit(rich, "buy", "100", "1"),
            limit(poor, "buy", "100", "0.5"), limit(seller, "sell", "100", "0.1")]
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        since = conn.execute(LAST_OUTBOX_ROW).fetchone()[0]
        answers = place(conn, rows)
        messages = announced(conn, since, (rich, poor, seller))
        holds = [held(conn, user, asset) for user, asset in
                 ((rich, "USDT"), (poor, "USDT"), (seller, "BTC"))]
        conn.rollback()
    assert [(item, outcome, code) for item, outcome, code, _, _ in answers] == [
        (1, "placed", None), (2, "refused", "INSUFFICIENT_FUNDS"), (3, "placed", None),
        (4, "placed", None)]
    assert re.fullmatch(rf"hold order:\d+: {rich} has less than 100\.000000 USDT available",
                        answers[1][3]), answers[1][3]
    assert holds == [Decimal(100), Decimal(50), Decimal("0.1")]
    assert len(messages) == 1, messages
    assert messages[0]["changes"] == sorted(
        [{"user": rich, "asset": "USDT"}, {"user": poor, "asset": "USDT"},
         {"user": seller, "asset": "BTC"}], key=lambda change: (change["user"], change["asset"]))


def test_a_replayed_order_in_the_batch_of_a_new_one_is_held_once(ledger, test_settings):
    """A redelivered request's order (same client order id and request id)
    in the batch of a new order: answered with the order placed before,
    nothing held again for it; the new one held, in one balances_changed."""
    user = funded(ledger, {"USDT": "300"})
    first = limit(user, "buy", "100", "1", client_order_id="again", request_id="request-1")
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        since = conn.execute(LAST_OUTBOX_ROW).fetchone()[0]
        (placed,) = place(conn, [first])
        again = place(conn, [first, limit(user, "buy", "100", "1.5")])
        messages = announced(conn, since, (user,))   # of both calls: one each
        total = held(conn, user, "USDT")
        conn.rollback()
    assert placed[1] == "placed"
    assert [(outcome, code) for _, outcome, code, _, _ in again] == [("replayed", None),
                                                                    ("placed", None)]
    assert again[0][4] == placed[4] and again[1][4] != placed[4]
    assert total == Decimal(250)
    assert len(messages) == 2, messages
    assert all(message["changes"] == [{"user": user, "asset": "USDT"}] for message in messages)
