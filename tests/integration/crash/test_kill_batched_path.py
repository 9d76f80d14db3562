"""kill -9 on the batched order path (issue 18), each process killed while a
batch is inside its transaction: a client that sent a ``place_orders`` batch,
an orders process, the active matching engine, the wallets settler.

Processes as in test_kill_processes (two matching engines, two orders
processes, one wallets; `nameko run` each, on the test vhost and database);
clients place ``place_orders`` batches (limits both sides around 100, IOCs,
market orders, one order refused for funds now and then) and cancel through
``cancel_orders``. "Mid-batch" is made certain, not hoped for: the test holds
a row or table lock the victim's next statement needs, waits until one of
the victim's PostgreSQL sessions waits for it (pg_stat_activity, mapped to
the process by its TCP port), kills the process with SIGKILL, lets the lock
go and restarts the process:

* the client: its batch waits in ``place_orders_tx`` on its user's account;
  nobody is left to read the answer, and the orders are placed once each,
  with their holds, or not at all;
* an orders process: a batch waits in ``place_orders_tx``; its requests are
  redelivered to the other orders process and answered;
* the active engine: its batch waits on the journal's insert (the table
  locked in SHARE mode), having applied the batch in memory; the standby
  takes the market over and journals the commands again from the queue;
* wallets: a settlement batch waits on a user's account.

Afterwards every acknowledged order exists exactly once with its one hold,
its command is journaled once, the trades recorded equal a fresh replay of
the journal, each trade settled once, and ``audit()`` is clean.
"""
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections import Counter
from decimal import Decimal as D

import eventlet
import psycopg
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.config import REPO_ROOT
from services.wallets.ledger import FEE_REVENUE, system_owner
from tests.integration.crash.test_kill_processes import (  # noqa: F401 (processes: fixture)
    MARKET, SERVICES, assert_conserved, fee_totals, journal_seq, journaled, kill9, processes,
    sweep_until_nothing_locked, trades_replayed_and_settled_once, wait_services_up)
from tests.integration.identity_kit import principal_tokens  # noqa: F401 (fixture)
from tests.integration.orders.conftest import as_admin, empty_books, fund, wait_for

SEED = int(os.environ.get("CRASH_SEED", "20261205"))
USERS = 5
CLIENTS = 3
DEPOSITS = {"BTC": "50", "USDT": "100000"}

# A client in a process of its own: one place_orders batch, its answer
# written to a file (never, when it is killed first).
CLIENT_PROCESS = """
import json, sys
import eventlet
eventlet.monkey_patch()
from nameko.standalone.rpc import ClusterRpcProxy
config, orders, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
with ClusterRpcProxy(config, timeout=120) as rpc:
    answers = rpc.orders.place_orders(orders)
open(out, "w").write(json.dumps(answers))
"""


def random_batch(rng: random.Random, users: list[str]) -> list[dict]:
    batch = []
    for _ in range(rng.randint(1, 6)):
        user, side, roll = rng.choice(users), rng.choice(["buy", "sell"]), rng.random()
        order = {"user": user, "market": MARKET, "side": side}
        if roll < 0.03:      # refused for funds, alone: the others are placed
            order.update(type="limit", side="buy", price="100", quantity="5000")
        elif roll < 0.15:
            order.update(type="market", **({"quote_amount": str(rng.randint(6, 30))}
                                           if side == "buy" else
                                           {"quantity": f"0.{rng.randint(1, 9):02d}"}))
        else:
            order.update(type="limit", price=str(D(100) + D(rng.randint(-300, 300)) / 100),
                         quantity=f"0.{rng.randint(1, 30):02d}",
                         time_in_force="IOC" if roll < 0.25 else "GTC")
            if rng.random() < 0.5:
                order["client_order_id"] = uuid.uuid4().hex[:20]
        batch.append(order)
    return batch


def batch_client(config, rng, users, acknowledged, refusals, stop):
    """place_orders batches and cancel_orders of its own orders until ``stop``."""
    mine = []
    with ClusterRpcProxy(config, timeout=180) as rpc:
        while not stop:
            try:
                if mine and rng.random() < 0.2:
                    picked = rng.sample(mine, min(len(mine), rng.randint(1, 3)))
                    rpc.orders.cancel_orders([{"user": u, "order_id": i} for i, u in picked])
                    continue
                for answer in rpc.orders.place_orders(random_batch(rng, users)):
                    if "order" in answer:
                        placed = (answer["order"]["order_id"], answer["order"]["user_id"])
                        acknowledged.append(placed)
                        mine.append(placed)
                    else:
                        refusals.append(answer["error"]["code"])
            except Exception as exc:  # noqa: BLE001 - a process died under us: not acknowledged
                refusals.append(type(exc).__name__)
                eventlet.sleep(0.2)


# ---------------------------------------------------------------- mid-batch

def blocked_ports(settings, blocker: int, query_like: str) -> list[int]:
    """TCP ports of the sessions that the session ``blocker`` (a backend
    pid) keeps waiting while they run a statement like ``query_like``: only
    the test's own lock counts, not the ordinary contention of the load."""
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return [port for (port,) in conn.execute(
            "SELECT client_port FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid)) "
            "AND query LIKE %s AND client_port IS NOT NULL", (blocker, query_like))]


def process_of_port(port: int, candidates: dict) -> str | None:
    """Which of ``candidates`` (name -> Process) owns the local TCP ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                rows = list(lines)[1:]
        except FileNotFoundError:
            continue            # a kernel without IPv6 has no tcp6 table
        for line in rows:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    for name, proc in candidates.items():
        pid = proc.running_pid()
        if pid is None:
            continue
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return name
    return None


def kill_mid_batch(settings, processes, names, query_like, lock_statement, lock_args=(),
                   then=None):
    """Hold the lock (then call ``then``), wait until one of ``names``'
    sessions waits for it running ``query_like``, kill -9 that process, let
    the lock go, restart it. Returns the name of the process killed."""
    candidates = {name: processes[name] for name in names}
    with psycopg.connect(settings.postgres_dsn()) as lock:
        lock.execute("SET lock_timeout = '60s'")
        lock.execute(lock_statement, lock_args)
        if then is not None:
            then()
        victim = []

        def waiting():
            for port in blocked_ports(settings, lock.info.backend_pid, query_like):
                name = process_of_port(port, candidates)
                if name:
                    victim.append(name)
                    return True
            return False
        wait_for(waiting, 60, f"a batch of {'/'.join(names)} waiting in {query_like}")
        kill9(processes[victim[0]])
        lock.rollback()
    processes[victim[0]].start()
    return victim[0]


# ---------------------------------------------------------------- the test

def test_batched_path_killed_mid_batch_loses_and_doubles_nothing(
        processes, nameko_config, test_settings, principal_tokens, tmp_path):  # noqa: F811
    rng = random.Random(SEED)
    with ClusterRpcProxy(nameko_config, timeout=60) as rpc:
        wait_services_up(rpc)
        with as_admin(nameko_config, principal_tokens, timeout=60) as admin:
            empty_books(admin)
        users = [fund(rpc, DEPOSITS) for _ in range(USERS)]
        lone, pinned = fund(rpc, DEPOSITS), fund(rpc, DEPOSITS)
        everyone = users + [lone, pinned]
        journal_start = journal_seq(test_settings)
        fees_before = fee_totals(test_settings, DEPOSITS)

        acknowledged, refusals, stop = [], [], []
        clients = [eventlet.spawn(batch_client, nameko_config, random.Random(SEED + n), users,
                                  acknowledged, refusals, stop) for n in range(CLIENTS)]
        wait_for(lambda: len(acknowledged) > 30, 60, "orders flowing")
        killed = []

        # 1. A client process killed with its batch inside place_orders_tx.
        lone_orders = [{"user": lone, "market": MARKET, "side": "buy", "type": "limit",
                        "price": "97", "quantity": "0.1"},
                       {"user": lone, "market": MARKET, "side": "sell", "type": "limit",
                        "price": "103", "quantity": "0.2", "client_order_id": "lone-1"}]
        answer_file = tmp_path / "lone.json"
        with psycopg.connect(test_settings.postgres_dsn()) as lock:
            lock.execute("SELECT 1 FROM wallets.accounts WHERE owner = %s FOR UPDATE", (lone,))
            client = subprocess.Popen(
                [sys.executable, "-c", CLIENT_PROCESS, json.dumps(nameko_config),
                 json.dumps(lone_orders), str(answer_file)], cwd=REPO_ROOT,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
            wait_for(lambda: bool(blocked_ports(test_settings, lock.info.backend_pid,
                                                "%place_orders_tx%")),
                     60, "the client's batch waiting in place_orders_tx")
            client.send_signal(signal.SIGKILL)
            client.wait(timeout=10)
            lock.rollback()
        killed.append("client")

        # 2. An orders process with a batch inside place_orders_tx; the
        #    pinned user's batch is answered after its redelivery.
        pinned_answers = []

        def pinned_batch():
            with ClusterRpcProxy(nameko_config, timeout=180) as client_rpc:
                pinned_answers.extend(client_rpc.orders.place_orders([
                    {"user": pinned, "market": MARKET, "side": "buy", "type": "limit",
                     "price": "96", "quantity": "0.1"},
                    {"user": pinned, "market": MARKET, "side": "sell", "type": "limit",
                     "price": "104", "quantity": "0.1"}]))
        pinned_thread = []
        killed.append(kill_mid_batch(
            test_settings, processes, ("orders-a", "orders-b"), "%place_orders_tx%",
            "SELECT 1 FROM wallets.accounts WHERE owner = %s FOR UPDATE", (pinned,),
            then=lambda: pinned_thread.append(eventlet.spawn(pinned_batch))))
        pinned_thread[0].wait()
        for answer in pinned_answers:
            acknowledged.append((answer["order"]["order_id"], pinned))

        # 3. The active engine with a batch applied in memory, its journal
        #    insert waiting (SHARE blocks inserts, not the standby's reads).
        killed.append(kill_mid_batch(test_settings, processes, ("matching-a", "matching-b"),
                                     "%INSERT INTO matching_journal%",
                                     "LOCK TABLE matching_journal IN SHARE MODE"))

        # 4. wallets with a settlement batch waiting on the fee revenue
        #    accounts (every trade pays a fee; holds do not touch them, so
        #    orders keep being accepted and trading meanwhile).
        killed.append(kill_mid_batch(test_settings, processes, ("wallets",),
                                     "%wallets.transactions_id_seq%",
                                     "SELECT 1 FROM wallets.accounts WHERE owner = %s "
                                     "FOR UPDATE", (system_owner(FEE_REVENUE),)))
        eventlet.sleep(2.0)
        stop.append(True)
        for thread in clients:
            thread.wait()
        print(f"acknowledged {len(acknowledged)} orders, refusals {Counter(refusals)}, "
              f"killed {killed}")
        assert {"client", "wallets"} <= set(killed) and len(killed) == 4
        assert len(acknowledged) > 60

        # Every acknowledged order reaches the engine once; the killed
        # client's batch was placed whole (its request outlived it) or not
        # at all, never twice.
        ids = [order_id for order_id, _ in acknowledged]
        wait_for(lambda: journaled(test_settings, ids) == len(set(ids)), 120,
                 "every acknowledged order to be journaled")
        with psycopg.connect(test_settings.postgres_dsn()) as conn:
            lone_ids = [r[0] for r in conn.execute(
                "SELECT order_id FROM orders WHERE user_id = %s", (lone,))]
        # Its request was being committed when it died: placed, once, whole.
        assert len(lone_ids) == len(lone_orders), lone_ids
        ids_all = ids + lone_ids
        wait_for(lambda: journaled(test_settings, ids_all) == len(set(ids_all)), 120,
                 "the killed client's orders to be journaled")

        with psycopg.connect(test_settings.postgres_dsn()) as conn:
            rows = conn.execute("SELECT order_id, user_id FROM orders WHERE user_id = ANY(%s)",
                                (everyone,)).fetchall()
            holds = Counter(r[0] for r in conn.execute(
                "SELECT idempotency_key FROM wallets.transactions WHERE idempotency_key = ANY(%s)",
                ([f"hold:order:{i}" for i in ids_all],)))
            commands = Counter(r[0] for r in conn.execute(
                "SELECT command_id FROM matching_journal WHERE market = %s AND command_id = ANY(%s)",
                (MARKET, [f"place:{i}" for i in ids_all])))
        # Exactly the acknowledged orders (and the killed client's) exist:
        # an order placed twice would be a second order id of these users.
        # Each has its hold and its command (one per key: the ledger's and
        # the journal's unique keys; a hold taken twice is what audit()'s
        # hold_without_order and assert_conserved below catch).
        assert len(ids) == len(set(ids))
        assert sorted(r[0] for r in rows) == sorted(ids_all)
        assert set(holds) == {f"hold:order:{i}" for i in ids_all}
        assert set(commands) == {f"place:{i}" for i in ids_all}

        # Sweep what rests; nothing stays locked. The trades equal a fresh
        # replay of the journal, each settled once; money audited and conserved.
        sweep_until_nothing_locked(test_settings, nameko_config, principal_tokens, rpc,
                                   everyone, DEPOSITS)
        assert len(trades_replayed_and_settled_once(test_settings, journal_start, ids_all)) > 10
        assert [a for a in rpc.wallets.audit() if any(u in str(a) for u in everyone)] == []
        assert_conserved(test_settings, rpc, everyone, DEPOSITS, fees_before)
