"""The zone drills' exactly-once checks catch a loss and a double.

zone_kit.acknowledged_not_kept_once and settlement_differences judge the
drills (test_zone_loss_trading, test_rolling_upgrade), which need a
deployment and are skipped without one. They counted rows per unique key (a
count that can only be 1) and compared totals; they are set equalities now.
Here they run against the real PostgreSQL of the test namespace (the same
tables as the zones'), on rows written in a transaction that is rolled back:
a clean run finds nothing, and each defect is found by name."""
import uuid

import psycopg
import pytest

from tests.integration.zones import zone_kit as kit

MARKET = "ZK-CHECK"   # no market of the registry: its fills and settlements are these rows only


@pytest.fixture
def db(test_settings):
    """A connection in a transaction rolled back at the end, and the checks'
    ``query`` on it (psql's lines: columns joined by '|')."""
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        conn.execute("SET search_path = orders, public")

        def query(sql):
            return ["|".join("" if v is None else str(v) for v in row) for row in conn.execute(sql)]
        try:
            yield conn, query
        finally:
            conn.rollback()


class Orders:
    """Orders and holds written the way acceptance writes them, and a load
    that says what its client was told."""

    def __init__(self, conn):
        self.conn = conn
        self.next_id = conn.execute("SELECT coalesce(max(order_id), 0) + 1000 FROM orders.orders").fetchone()[0]
        self.load = kit.OrderLoad(kit.Trader("b", f"zk-{uuid.uuid4()}", "", ""),
                                  kit.Trader("s", f"zk-{uuid.uuid4()}", "", ""))

    def place(self, trader, client_order_id, hold=True) -> int:
        order_id, self.next_id = self.next_id, self.next_id + 1
        self.conn.execute(
            "INSERT INTO orders.orders (order_id, user_id, market, client_order_id, side, order_type, "
            "price, quantity, time_in_force, status, hold_asset, hold_amount) "
            "VALUES (%s, %s, %s, %s, 'buy', 'limit', 1, 1, 'GTC', 'new', 'USDT', 1)",
            (order_id, trader.user_id, MARKET, client_order_id))
        if hold:
            self.conn.execute("INSERT INTO wallets.transactions (idempotency_key, type) VALUES (%s, 'hold')",
                              (f"hold:order:{order_id}",))
        return order_id

    def acknowledged(self, trader, n, side="b") -> int:
        client_order_id = f"zd-{self.load.run_id}-{n}-{side}"
        order_id = self.place(trader, client_order_id)
        self.load.acks.append((0.0, client_order_id, order_id))
        return order_id


def test_every_acknowledged_order_kept_once_is_clean(db):
    conn, query = db
    orders = Orders(conn)
    orders.acknowledged(orders.load.buyer, 1, "b")
    orders.acknowledged(orders.load.seller, 1, "s")
    orders.place(orders.load.buyer, "zd-0therrun-1-b")          # an earlier run's order
    given_up = f"zd-{orders.load.run_id}-2-b"                    # placed, its answer lost
    orders.place(orders.load.buyer, given_up)
    orders.load.given_up.append(given_up)
    assert kit.acknowledged_not_kept_once(orders.load, query) == []


def test_an_acknowledged_order_lost_is_found(db):
    conn, query = db
    orders = Orders(conn)
    orders.acknowledged(orders.load.buyer, 1)
    orders.load.acks.append((0.0, f"zd-{orders.load.run_id}-1-s", 123))
    assert kit.acknowledged_not_kept_once(orders.load, query) == [
        f"zd-{orders.load.run_id}-1-s: stored 0 times"]


def test_an_order_placed_twice_is_found_whatever_its_client_order_id(db):
    """The second placement cannot share the client order id (unique per
    user): it is one more order of the trader, e.g. under the id derived
    from a request id, or under one of this run's ids nobody was told of."""
    conn, query = db
    orders = Orders(conn)
    orders.acknowledged(orders.load.buyer, 1)
    double = orders.place(orders.load.buyer, str(uuid.uuid4()))
    unasked = orders.place(orders.load.seller, f"zd-{orders.load.run_id}-9-s")
    assert kit.acknowledged_not_kept_once(orders.load, query) == [
        f"order {double} ({_coid(conn, double)}): stored, never acknowledged",
        f"order {unasked} (zd-{orders.load.run_id}-9-s): stored, never acknowledged"]


def test_an_order_without_its_hold_or_named_wrongly_is_found(db):
    conn, query = db
    orders = Orders(conn)
    unheld = orders.place(orders.load.buyer, f"zd-{orders.load.run_id}-1-b", hold=False)
    orders.load.acks.append((0.0, f"zd-{orders.load.run_id}-1-b", unheld))
    named = orders.acknowledged(orders.load.seller, 1, "s")
    orders.load.acks[-1] = (0.0, f"zd-{orders.load.run_id}-1-s", named + 1)
    assert kit.acknowledged_not_kept_once(orders.load, query) == [
        f"zd-{orders.load.run_id}-1-s: acknowledged as order {named + 1}, stored as {named}",
        f"order {unheld}: no hold"]


def _coid(conn, order_id):
    return conn.execute("SELECT client_order_id FROM orders.orders WHERE order_id = %s",
                        (order_id,)).fetchone()[0]


def fill(conn, order_id, trade_id):
    conn.execute("INSERT INTO orders.order_fills (trade_id, order_id, market, price, quantity, "
                 "quote_quantity, is_maker, executed_at) VALUES (%s, %s, %s, 1, 1, 1, false, 0)",
                 (trade_id, order_id, MARKET))


def settle(conn, trade_id):
    conn.execute("INSERT INTO wallets.transactions (idempotency_key, type) VALUES (%s, 'trade')",
                 (f"trade:{MARKET}:{trade_id}",))


def test_settlement_differences_catch_a_lost_and_an_extra_settlement(db):
    conn, query = db
    orders = Orders(conn)
    maker = orders.acknowledged(orders.load.buyer, 1)
    taker = orders.acknowledged(orders.load.seller, 1, "s")
    assert kit.settlement_differences(query, MARKET) == []
    for trade in ("ZK-1", "ZK-2"):
        fill(conn, maker, trade)
        fill(conn, taker, trade)
    settle(conn, "ZK-1")
    settle(conn, "ZK-2")
    assert kit.settlement_differences(query, MARKET) == []
    # A trade executed and never settled, and one settled twice under a
    # second id (the only way past the ledger's unique key): the counts of
    # the old check (3 executed, 3 settled) were equal.
    fill(conn, maker, "ZK-3")
    settle(conn, "ZK-2-again")
    assert kit.settlement_differences(query, MARKET) == [
        "trade ZK-3: executed, not settled", "trade ZK-2-again: settled, never executed"]
