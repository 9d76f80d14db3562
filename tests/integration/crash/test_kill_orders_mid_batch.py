"""kill -9 of a real orders process while a batch of orders is in flight
(issue 18): every acknowledged order exists exactly once, with its hold, and
nothing else was placed.

The orders process (`nameko run`, test vhost and database) gets a first call
whose batch the test holds in its transaction (it locks the account that
batch holds from), then more calls -- single place_order calls and
place_orders batches -- that queue up behind it. The test sees the batch
waiting inside place_orders_tx (pg_stat_activity), kills the process with
SIGKILL, lets the lock go, and starts the process again. The broker
redelivers every unanswered request to the new process (Nameko acks a
request after its reply), and each client gets an answer: the uncommitted
batch was rolled back by PostgreSQL, so its requests are placed once now;
any request whose batch had committed is answered with the orders it placed.
"""
import sys
import uuid
from collections import Counter
from decimal import Decimal as D

import eventlet
import psycopg
import pytest
import yaml
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.config import REPO_ROOT
from services.matching.service import MatchingService
from services.wallets.service import WalletsService
from stack.proc import Process
from tests.integration.crash.test_kill_processes import kill9
from tests.integration.identity_kit import principal_tokens  # noqa: F401 (fixture)
from tests.integration.orders.conftest import as_admin, balance, empty_books, fund, wait_for

QUEUED_CLIENTS = 8


@pytest.fixture
def orders_process(nameko_config, test_settings, test_run_dir, container_factory):
    for cls in (WalletsService, MatchingService):
        container_factory(cls, nameko_config).start()
    run = test_run_dir / "crash-test-batch"
    run.mkdir(parents=True, exist_ok=True)
    config_file = run / "nameko.yaml"
    config_file.write_text(yaml.safe_dump({**nameko_config, "max_workers": 40}))
    env = {**test_settings.values, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    proc = Process(name="orders-batch", argv=[sys.executable, "-m", "nameko", "run", "--config",
                                               str(config_file), "services.orders.service"],
                   log=run / "orders.log", pid_file=run / "orders.pid", env=env, cwd=REPO_ROOT)
    proc.start()
    yield proc
    proc.stop(timeout=10)


def batch_waiting_on_lock(settings) -> bool:
    """An orders backend inside place_orders_tx, waiting for a lock."""
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%%place_orders_tx%%' AND pid <> pg_backend_pid()").fetchone()[0] > 0


def test_orders_killed_mid_batch_places_each_acknowledged_order_once_with_its_hold(
        orders_process, nameko_config, test_settings, principal_tokens):
    with ClusterRpcProxy(nameko_config, timeout=60) as rpc:
        wait_for(lambda: _answers(rpc), 90, "orders up")
        with as_admin(nameko_config, principal_tokens, timeout=60) as admin:
            empty_books(admin)
        blocker = fund(rpc, {"USDT": "1000"})
        users = [fund(rpc, {"USDT": "1000"}) for _ in range(QUEUED_CLIENTS)]
        answers: dict = {}

        def call(key, user):
            with ClusterRpcProxy(nameko_config, timeout=180) as client:
                if key % 2:
                    answers[key] = [client.orders.place_order(
                        user, "BTC-USDT", "buy", "limit", quantity="0.1", price="90")]
                else:   # a batch: two orders and one refused for funds
                    answers[key] = [a.get("order") for a in client.orders.place_orders([
                        {"user": user, "market": "BTC-USDT", "side": "buy", "price": "91",
                         "quantity": "0.1"},
                        {"user": user, "market": "BTC-USDT", "side": "buy", "price": "92",
                         "quantity": "0.2", "client_order_id": f"c-{uuid.uuid4().hex[:12]}"},
                        {"user": user, "market": "BTC-USDT", "side": "buy", "price": "90",
                         "quantity": "50"}])]

        with psycopg.connect(test_settings.postgres_dsn()) as lock:
            lock.execute("SELECT 1 FROM wallets.accounts WHERE owner = %s AND asset = 'USDT' "
                         "FOR UPDATE", (blocker,))
            first = eventlet.spawn(call, -1, blocker)
            wait_for(lambda: batch_waiting_on_lock(test_settings), 60, "the batch in flight")
            queued = [eventlet.spawn(call, key, user) for key, user in enumerate(users)]
            eventlet.sleep(1.0)   # let them reach the process (not needed for correctness)
            kill9(orders_process)
            lock.rollback()
        orders_process.start()
        for thread in [first, *queued]:
            thread.wait()

        acknowledged = [o for orders in answers.values() for o in orders if o is not None]
        assert len(answers) == QUEUED_CLIENTS + 1, "every client was answered"
        # The blocker's order, two of each batch's three, the single calls' one.
        assert len(acknowledged) == 1 + sum(1 if key % 2 else 2 for key in range(QUEUED_CLIENTS))
        ids = [o["order_id"] for o in acknowledged]
        everyone = [blocker, *users]
        with psycopg.connect(test_settings.postgres_dsn()) as conn:
            placed = conn.execute("SELECT order_id, user_id, hold_amount FROM orders "
                                  "WHERE user_id = ANY(%s)", (everyone,)).fetchall()
            holds = Counter(r[0] for r in conn.execute(
                "SELECT idempotency_key FROM wallets.transactions WHERE idempotency_key = ANY(%s)",
                ([f"hold:order:{i}" for i in ids],)))
        # Exactly the acknowledged orders exist (an order placed twice would
        # be a second order id of these users), each with its hold (one per
        # key: the ledger's unique key; a hold taken twice is what the
        # locked balances below catch).
        assert sorted(r[0] for r in placed) == sorted(ids) and len(set(ids)) == len(ids)
        assert set(holds) == {f"hold:order:{i}" for i in ids}
        # Each user's locked funds are the holds of their orders, nothing more.
        held = Counter()
        for _, user, hold in placed:
            held[user] += hold
        for user in everyone:
            assert balance(rpc, user, "USDT") == (D("1000") - held[user], held[user]), user
        for user in everyone:
            rpc.orders.cancel_all(user, "BTC-USDT")
        wait_for(lambda: all(balance(rpc, u, "USDT") == (D("1000"), D("0")) for u in everyone),
                 60, "every hold released")
        audit = rpc.wallets.audit()
        assert [a for a in audit if any(u in str(a) for u in everyone)] == []


def _answers(rpc) -> bool:
    try:
        return rpc.orders.health()["status"] in ("ok", "degraded")
    except Exception:  # noqa: BLE001 - not consuming yet
        return False
