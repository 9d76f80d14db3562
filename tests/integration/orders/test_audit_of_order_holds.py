"""wallets' audit compares the funds held for orders with the orders
service's own account of them (issue 12): a hold no order explains shows, a
finished order that still holds shows, a fill executed but not yet settled
does not. Every test of this folder also ends with ``wallets.audit() == []``
after real trading (conftest ``exchange``).

The faults are injected by the operator inside a transaction that is rolled
back, and the audit runs in that same transaction (``run_audit``, what the
``audit`` RPC runs): the shared test database never sees them."""
from contextlib import contextmanager
from decimal import Decimal
import psycopg

from services.wallets import audit
from tests.integration.orders.conftest import fund


@contextmanager
def operator_transaction(test_settings):
    """The operator's connection in a transaction that is always rolled back."""
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        try:
            yield conn
        finally:
            conn.rollback()


def findings(conn, check: str, user: str) -> list[str]:
    return [f["detail"] for f in audit.run_audit(conn) if f["check"] == check and user in f["detail"]]


def order_with_hold(conn, user) -> int:
    """A limit buy of 0.1 BTC at 90 USDT written as acceptance writes one:
    its row and its 9 USDT hold (ref ``order:<id>``) in one transaction. The
    engine never hears of it, so no other test's book clearing can end it."""
    order_id = conn.execute(
        "INSERT INTO orders.orders (order_id, user_id, market, side, order_type, price, quantity, "
        "time_in_force, status, hold_asset, hold_amount) VALUES (nextval('orders.order_ids'), "
        "%s, 'BTC-USDT', 'buy', 'limit', 90, 0.1, 'GTC', 'new', 'USDT', 9) RETURNING order_id",
        (user,)).fetchone()[0]
    conn.execute("SELECT wallets.hold_funds(%s, 'USDT', 9, %s)", (user, f"order:{order_id}"))
    return order_id


def test_a_hold_no_order_explains_shows(exchange, test_settings):
    user = fund(exchange, {"USDT": "100"})
    with operator_transaction(test_settings) as conn:
        assert findings(conn, "hold_without_order", user) == []
        # An order id no order will ever have: the sequence never gives it again.
        stray = conn.execute("SELECT nextval('orders.order_ids')").fetchone()[0]
        conn.execute("SELECT wallets.hold_funds(%s, 'USDT', 7, %s)", (user, f"order:{stray}"))
        assert findings(conn, "hold_without_order", user) == [
            f"{user} USDT: the ledger holds 7.000000 for orders, "
            "the orders service accounts for 0.000000"]


def test_a_finished_order_that_still_holds_shows(exchange, test_settings):
    user = fund(exchange, {"USDT": "100"})
    with operator_transaction(test_settings) as conn:
        order_id = order_with_hold(conn, user)
        assert findings(conn, "held_for_finished_order", user) == []
        assert findings(conn, "hold_without_order", user) == []
        # Finished without its leftover released (what the dropped
        # trade left behind: an order over, its quote held for ever).
        conn.execute("UPDATE orders.orders SET status = 'cancelled' WHERE order_id = %s",
                     (order_id,))
        assert findings(conn, "held_for_finished_order", user) == [
            f"order {order_id} of {user} is cancelled but 9.000000 USDT stays held for it"]
        assert findings(conn, "hold_without_order", user) == []


def test_a_fill_executed_but_not_yet_settled_is_no_alarm(exchange, test_settings):
    """The order filled in orders' books (its fill recorded, the order
    finished with nothing left to release) while wallets has not settled the
    trade: the quote is still locked in the ledger, and rightly so."""
    user = fund(exchange, {"USDT": "100"})
    with operator_transaction(test_settings) as conn:
        order_id = order_with_hold(conn, user)
        conn.execute("UPDATE orders.orders SET filled_quantity = 0.1, filled_quote = 9, "
                     "status = 'filled', released_amount = 0 WHERE order_id = %s", (order_id,))
        assert findings(conn, "hold_without_order", user) == []
        assert findings(conn, "held_for_finished_order", user) == []
        assert balance_in(conn, user) == (91 * 10 ** 6, 9 * 10 ** 6)


def balance_in(conn, user) -> tuple[int, int]:
    """(available, locked) of the user's USDT account, in minor units."""
    return tuple(int(v) for v in conn.execute(
        "SELECT available, locked FROM wallets.accounts WHERE owner = %s AND asset = 'USDT'",
        (user,)).fetchone())


def test_a_finished_order_filled_after_its_end_shows(exchange, test_settings):
    """A fill recorded after the order's end (its release computed without
    it) leaves the hold over-spent: the audit's read covers the fills too."""
    user = fund(exchange, {"USDT": "100"})
    with operator_transaction(test_settings) as conn:
        order_id = order_with_hold(conn, user)
        conn.execute("UPDATE orders.orders SET status = 'cancelled', released_amount = 9 "
                     "WHERE order_id = %s", (order_id,))
        conn.execute("SELECT wallets.release_funds(%s, 'USDT', 9, %s)",
                     (user, f"order:{order_id}:final"))
        assert findings(conn, "held_for_finished_order", user) == []
        conn.execute("UPDATE orders.orders SET filled_quantity = 0.01, filled_quote = 0.9 "
                     "WHERE order_id = %s", (order_id,))
        assert findings(conn, "held_for_finished_order", user) == [
            f"order {order_id} of {user} is cancelled but -0.900000 USDT stays held for it"]


def test_the_finished_orders_holding_are_read_by_an_index_of_them_alone(test_settings):
    """The audit's read of finished orders still holding funds costs the rows
    found, not the history (it read every finished order: 667 ms on the
    order-path bench's 461,000): the function's query can be served by the
    partial index orders_finished_holding, whose predicate it must imply."""
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        body = conn.execute("SELECT prosrc FROM pg_proc WHERE oid = "
                            "'orders.finished_orders_holding(int)'::regprocedure").fetchone()[0]
        conn.execute("SET LOCAL enable_seqscan = off")   # what the index could serve
        plan = conn.execute("EXPLAIN (FORMAT JSON) " + body.replace("p_limit", "50")
                            ).fetchone()[0][0]["Plan"]
        conn.rollback()
    indexes = []
    nodes = [plan]
    while nodes:
        node = nodes.pop()
        indexes.append(node.get("Index Name"))
        nodes.extend(node.get("Plans", []))
    assert "orders_finished_holding" in indexes, plan


def held_by(conn, function: str, user: str) -> dict:
    return {asset: held for owner, asset, held in conn.execute(
        f"SELECT user_id, asset, held FROM orders.{function}() WHERE user_id = %s", (user,))
        if held != 0}


def checkpointed_findings(conn, check: str, user: str) -> list[str]:
    """What the periodic audit would find (from the checkpoint on; one is
    made in the rolled-back transaction when the database has none yet)."""
    conn.execute("INSERT INTO wallets.audit_checkpoint (through_id) VALUES (%s) "
                 "ON CONFLICT DO NOTHING", (audit._EVERYTHING,))
    through = conn.execute("SELECT through_id FROM wallets.audit_checkpoint").fetchone()[0]
    return [f["detail"] for f in audit.run_audit(conn, through)
            if f["check"] == check and user in f["detail"]]


def test_the_kept_totals_follow_every_write_of_an_order(exchange, test_settings):
    """orders.held_totals (orders' migration 015), which the periodic audit
    reads instead of every order ever placed, follows each statement that
    writes an order's hold or release: an insert, an amend of the hold, an
    end's release, a delete; the full audit compares it with the sum."""
    user = fund(exchange, {"USDT": "100"})
    with operator_transaction(test_settings) as conn:
        def same():
            summed = held_by(conn, "held_for_orders", user)
            assert held_by(conn, "held_for_orders_kept", user) == summed
            assert findings(conn, "held_totals_drift", user) == []
            return summed

        order_id = order_with_hold(conn, user)
        second = order_with_hold(conn, user)
        assert same() == {"USDT": 18}
        conn.execute("UPDATE orders.orders SET hold_amount = 12 WHERE order_id = %s", (order_id,))
        assert same() == {"USDT": 21}
        conn.execute("UPDATE orders.orders SET filled_quantity = 0.01, filled_quote = 0.9 "
                     "WHERE order_id = %s", (order_id,))         # a fill: no change
        assert same() == {"USDT": 21}
        # Both ends in one statement: 12 - 11.1 and 9 - 9 stay held.
        conn.execute("UPDATE orders.orders SET status = 'cancelled', released_amount = "
                     "CASE order_id WHEN %s THEN 11.1 ELSE 9 END WHERE order_id = ANY(%s)",
                     (order_id, [order_id, second]))
        assert same() == {"USDT": Decimal("0.9")}
        conn.execute("DELETE FROM orders.orders WHERE order_id = %s", (order_id,))
        assert same() == {}


def test_the_periodic_audit_reads_the_kept_totals(exchange, test_settings):
    """A kept total that no longer matches the orders (a write that bypassed
    the triggers) is held_totals_drift to the full audit, and to the
    periodic one (which reads the totals) a hold_without_order."""
    user = fund(exchange, {"USDT": "100"})
    with operator_transaction(test_settings) as conn:
        order_with_hold(conn, user)
        assert checkpointed_findings(conn, "hold_without_order", user) == []
        conn.execute("UPDATE orders.held_totals SET held = held + 1 "
                     "WHERE user_id = %s AND asset = 'USDT'", (user,))
        assert findings(conn, "held_totals_drift", user) == [
            f"{user} USDT: the orders hold 9 in sum, their kept totals say 10"]
        assert findings(conn, "hold_without_order", user) == []
        assert checkpointed_findings(conn, "hold_without_order", user) == [
            f"{user} USDT: the ledger holds 9.000000 for orders, "
            "the orders service accounts for 10.000000"]
