"""The one lock order (docs/order-flow.md, "Lock order"): accounts first, then
order rows. Each test holds a user's account as settlement would, lets a
path of orders run into it (it waits on that lock: ``pg_blocking_pids``),
and then takes the path's order rows with NOWAIT. A path that had locked an
order row before the account refuses that: the pattern of a deadlock, which
PostgreSQL breaks by aborting one side (a stall and a retry)."""
import time
import uuid
from decimal import Decimal as D

import eventlet
import psycopg
from psycopg import errors

from services.common.config import load_settings
from services.common.postgres import make_pool
from services.orders.acceptance import Acceptance, Amend, Cancel
from services.orders.providers import MarketCatalog, UserStates
from tests.integration.orders.conftest import (
    balance, fund, matching_events, taker_fill, unseen_order, wait_for,
)


def account_of(conn, user, asset="USDT") -> int:
    return conn.execute("SELECT id FROM wallets.accounts WHERE owner = %s AND asset = %s "
                        "AND kind = 'user'", (user, asset)).fetchone()[0]


def wait_blocked_by(conn, pid: int, what: str) -> None:
    """Until a backend waits on a lock ``pid`` holds (bounded: 30 s)."""
    deadline = time.monotonic() + 30
    while not conn.execute("SELECT count(*) FROM pg_stat_activity "
                           "WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)).fetchone()[0]:
        assert time.monotonic() < deadline, f"timed out waiting for {what} to wait on the account"
        eventlet.sleep(0.05)


def order_rows_free(conn, order_ids) -> bool:
    """True if ``conn`` can lock the order rows at once (then holds them)."""
    try:
        with conn.transaction():   # a savepoint: a refusal leaves conn usable
            conn.execute("SELECT order_id FROM orders WHERE order_id = ANY(%s) "
                         "FOR UPDATE NOWAIT", (list(order_ids),)).fetchall()
        return True
    except errors.LockNotAvailable:
        return False


def run_until_blocked_by(holder, dsn, handle, batch, what):
    """``handle(batch)`` on a green thread of its own, returned once it waits
    on a lock ``holder`` holds."""
    worker = eventlet.spawn(handle, batch)
    with psycopg.connect(dsn, autocommit=True) as watcher:
        wait_blocked_by(watcher, holder.info.backend_pid, what)
    return worker


def test_an_acceptance_batch_with_a_cancel_and_an_amend_locks_the_account_first(
        exchange, services, test_settings):
    container = services["orders"]
    batcher = next(e for e in container.extensions if isinstance(e, Acceptance)).batcher
    catalog = next(e for e in container.extensions if isinstance(e, MarketCatalog))
    user = fund(exchange, {"USDT": "1000"})
    cancelled, amended = (a["order"]["order_id"] for a in exchange.orders.place_orders([
        {"user": user, "market": "BTC-USDT", "side": "buy", "type": "limit",
         "price": "95", "quantity": "1"} for _ in range(2)]))
    with psycopg.connect(test_settings.postgres_dsn()) as settlement:
        settlement.execute("SELECT id FROM wallets.accounts WHERE id = %s FOR UPDATE",
                           (account_of(settlement, user),))
        batch = run_until_blocked_by(settlement, test_settings.postgres_dsn(),
                                     batcher.submit_many, [
                                         Cancel(user, cancelled),
                                         Amend(user, amended, None, D("2"), catalog.config)],
                                     "the batch")
        free = order_rows_free(settlement, (cancelled, amended))
        settlement.rollback()
        outcomes = batch.wait()
    assert free, "the batch locked order rows before their account"
    assert outcomes[0]["cancel_requested"] and outcomes[1]["amend_requested"]
    assert D(outcomes[1]["hold_amount"]) == D("190")
    wait_for(lambda: exchange.orders.get_order(user, cancelled)["status"] == "cancelled",
             what="the cancel to reach the engine and back")
    exchange.orders.cancel_all(user, "BTC-USDT")


def test_the_events_consumer_locks_the_ending_orders_accounts_before_any_order(
        exchange, nameko_config, test_settings):
    """One delivery amends an order and ends another of the same user: the
    amend's UPDATE is an order row lock, the end needs the account."""
    user = fund(exchange, {"USDT": "100"})
    dsn = test_settings.postgres_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = [unseen_order(conn, user) for _ in range(2)]
    amended, ending = ids
    batch = [
        ("order_updated", f"test-amend-{uuid.uuid4()}",
         {"event": "order_amended", "market": "BTC-USDT", "order_id": amended,
          "user_id": user, "price": "99", "quantity": "0.1"}),
        ("order_updated", f"test-done-{uuid.uuid4()}",
         {"event": "order_done", "status": "cancelled", "market": "BTC-USDT",
          "order_id": ending, "user_id": user})]
    with matching_events(nameko_config) as events, psycopg.connect(dsn) as settlement:
        settlement.execute("SELECT id FROM wallets.accounts WHERE id = %s FOR UPDATE",
                           (account_of(settlement, user),))
        consumer = run_until_blocked_by(settlement, dsn, events.handle, batch, "the consumer")
        free = order_rows_free(settlement, ids)
        settlement.rollback()
        consumer.wait()
    assert free, "the consumer locked an order row before the ending order's account"
    assert exchange.orders.get_order(user, ending)["status"] == "cancelled"
    assert exchange.orders.get_order(user, amended)["price"] == "99"
    assert balance(exchange, user, "USDT") == (D("90"), D("10"))


def test_a_delivery_with_fills_locks_its_ending_orders_accounts_before_any_order(
        exchange, nameko_config, test_settings):
    """A fill of one order and the end of another of the same user in one
    delivery (the fills' one statement, FILLS_AND_ENDS): the ending order's
    account before either order row."""
    user = fund(exchange, {"USDT": "100"})
    dsn = test_settings.postgres_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        filled, ending = (unseen_order(conn, user) for _ in range(2))
    batch = [
        taker_fill(filled, user, quantity="0.05", quote="5"),
        ("order_updated", f"test-done-{uuid.uuid4()}",
         {"event": "order_done", "status": "cancelled", "market": "BTC-USDT",
          "order_id": ending, "user_id": user})]
    with matching_events(nameko_config) as events, psycopg.connect(dsn) as settlement:
        settlement.execute("SELECT id FROM wallets.accounts WHERE id = %s FOR UPDATE",
                           (account_of(settlement, user),))
        consumer = run_until_blocked_by(settlement, dsn, events.handle, batch, "the consumer")
        free = order_rows_free(settlement, (filled, ending))
        settlement.rollback()
        consumer.wait()
    assert free, "the consumer locked an order row before the ending order's account"
    assert exchange.orders.get_order(user, filled)["filled_quantity"] == "0.05"
    assert exchange.orders.get_order(user, ending)["status"] == "cancelled"
    assert balance(exchange, user, "USDT") == (D("90"), D("10"))


def test_a_fill_that_an_end_waited_for_locks_the_account_before_the_order(
        exchange, nameko_config, test_settings):
    """An end came before its order's fill and waits (pending_order_ends);
    the delivery with the fill finishes the order and releases its leftover,
    so it must take the account before the order row, although nothing in
    the delivery itself is an end."""
    user = fund(exchange, {"USDT": "100"})
    dsn = test_settings.postgres_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        order_id = unseen_order(conn, user)
    end = ("order_updated", f"test-done-{uuid.uuid4()}", {
        "event": "order_done", "status": "cancelled", "reason": "USER_CANCEL",
        "market": "BTC-USDT", "order_id": order_id, "user_id": user, "side": "buy",
        "filled_quantity": "0.05", "remaining_quantity": "0.05"})
    with matching_events(nameko_config) as events, psycopg.connect(dsn) as settlement:
        events.handle([end])   # waits for the fill
        settlement.execute("SELECT id FROM wallets.accounts WHERE id = %s FOR UPDATE",
                           (account_of(settlement, user),))
        consumer = run_until_blocked_by(settlement, dsn, events.handle,
                                        [taker_fill(order_id, user, quantity="0.05", quote="5")],
                                        "the consumer")
        free = order_rows_free(settlement, (order_id,))
        settlement.rollback()
        consumer.wait()
    assert free, "the consumer locked the order row before the waiting end's account"
    order = exchange.orders.get_order(user, order_id)
    assert (order["status"], order["filled_quantity"], order["released_amount"]) == (
        "cancelled", "0.05", "5"), order
    assert balance(exchange, user, "USDT") == (D("95"), D("5"))


def test_the_events_consumer_locks_a_deliverys_order_rows_in_id_order(
        exchange, nameko_config, test_settings):
    """One delivery fills the later order and amends the earlier one: the
    fills' UPDATE and the amends' took their rows in event order (the later
    first), while an acceptance batch cancelling both takes them in id order,
    the earlier first: a deadlock. Here the acceptance's side holds the
    earlier row; the consumer must wait for it holding no other row."""
    user = fund(exchange, {"USDT": "100"})
    dsn = test_settings.postgres_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        earlier, later = (unseen_order(conn, user) for _ in range(2))
    batch = [
        taker_fill(later, user, quantity="0.05", quote="5"),
        ("order_updated", f"test-amend-{uuid.uuid4()}",
         {"event": "order_amended", "market": "BTC-USDT", "order_id": earlier,
          "user_id": user, "price": "99", "quantity": "0.1"})]
    with matching_events(nameko_config) as events, psycopg.connect(dsn) as acceptance:
        acceptance.execute("SELECT order_id FROM orders WHERE order_id = %s FOR UPDATE",
                           (earlier,))
        consumer = run_until_blocked_by(acceptance, dsn, events.handle, batch, "the consumer")
        free = order_rows_free(acceptance, (later,))
        acceptance.rollback()
        consumer.wait()
    assert free, "the consumer locked the later order's row before the earlier one's"
    assert exchange.orders.get_order(user, later)["filled_quantity"] == "0.05"
    assert exchange.orders.get_order(user, earlier)["price"] == "99"


def test_a_freeze_batch_takes_its_users_locks_in_user_order(nameko_config, test_settings):
    """A batch freezing B then A took B's exclusive lock, then waited for A's,
    while a placement (place_orders_tx: shared locks in user order) held A's
    and waited for B's: a deadlock. Here the placement's side holds A's; the
    freeze must wait for it holding no lock of B."""
    tag = uuid.uuid4().hex[:12]
    first, second = f"t-lock-a-{tag}", f"t-lock-b-{tag}"
    batch = [("user_frozen", f"test-freeze-{user}-{tag}",
              {"user_id": user, "state": "frozen", "previous_state": "active",
               "reason": "test", "by": "test", "at": 1}) for user in (second, first)]
    states = UserStates()
    states.pool = make_pool(load_settings(), nameko_config["POSTGRES_DB"], min_size=1,
                            max_size=2, name="test-orders-users")
    dsn = test_settings.postgres_dsn()
    try:
        with psycopg.connect(dsn) as placement:
            placement.execute("SELECT pg_advisory_xact_lock_shared(hashtextextended(%s, 7))",
                              (f"user:{first}",))
            freeze = run_until_blocked_by(placement, dsn, states.handle, batch, "the freeze")
            free = placement.execute(
                "SELECT pg_try_advisory_xact_lock_shared(hashtextextended(%s, 7))",
                (f"user:{second}",)).fetchone()[0]
            placement.rollback()
            freeze.wait()
        with psycopg.connect(dsn, autocommit=True) as conn:
            blocked = conn.execute("SELECT count(*) FROM user_trading_blocks "
                                   "WHERE user_id = ANY(%s)", ([first, second],)).fetchone()[0]
            conn.execute("DELETE FROM user_trading_blocks WHERE user_id = ANY(%s)",
                         ([first, second],))
    finally:
        states.pool.close()
    assert free, "the freeze locked the later user before the earlier one"
    assert blocked == 2
