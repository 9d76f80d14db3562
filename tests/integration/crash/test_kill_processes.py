"""kill -9 real service processes while orders flow, then prove nothing was lost.

Processes (each `nameko run`, on the test vhost and database): two matching
engines (one active, one hot standby per market), two orders processes, one
wallets process with trade settlement. Several clients place a seeded random
stream of orders (limits on both sides around 100, IOCs, market orders,
cancels) through `orders.place_order`, while the test kills with SIGKILL, at
seeded random moments: each matching process in turn (so the active engine
dies at least once and the standby takes over), an orders process, and the
wallets process; each is restarted after a moment.

Afterwards:
* every order whose place_order returned exists exactly once, its engine
  command is in the journal exactly once, and its state is consistent;
* the trades recorded by orders equal a fresh replay of the journal through the
  pure engine core (same ids, prices, quantities);
* `wallets.audit()` is clean; per asset the users' totals plus the fee account
  equal what was deposited;
* after an operator sweep cancels what rests, no user has anything locked.
"""
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter
from decimal import Decimal as D

import eventlet
import psycopg
import pytest
import yaml
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import catalogue
from services.common.config import REPO_ROOT
from services.common.errors import CodedError
from services.orders import errors as orders_errors  # noqa: F401 (its refusals arrive typed)
from services.matching.engine import MatchingEngine
from services.matching.models import MarketConfig, TRADE_EXECUTED, command_from_dict
from services.matching.wire import trade_id
from stack.proc import Process
from tests.integration.identity_kit import principal_tokens  # noqa: F401 (fixture)
from tests.integration.orders.conftest import as_admin, balance, empty_books, fund, wait_for

SEED = int(os.environ.get("CRASH_SEED", "20261122"))
USERS = 6
CLIENTS = 4
ORDERS_PER_CLIENT = 60
MARKET = "BTC-USDT"

SERVICES = {
    "matching-a": "services.matching.service",
    "matching-b": "services.matching.service",
    "orders-a": "services.orders.service",
    "orders-b": "services.orders.service",
    "wallets": "services.wallets.service",
}


@pytest.fixture
def processes(nameko_config, test_settings, test_run_dir):
    run = test_run_dir / "crash-test"
    run.mkdir(parents=True, exist_ok=True)
    config_file = run / "nameko.yaml"
    config_file.write_text(yaml.safe_dump({**nameko_config, "max_workers": 20}))
    env = {**test_settings.values, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    procs = {name: Process(name=name, argv=[sys.executable, "-m", "nameko", "run", "--config",
                                            str(config_file), module],
                           log=run / f"{name}.log", pid_file=run / f"{name}.pid", env=env,
                           cwd=REPO_ROOT)
             for name, module in SERVICES.items()}
    for proc in procs.values():
        proc.start()
    yield procs
    for proc in procs.values():
        proc.stop(timeout=10)


def kill9(proc: Process) -> None:
    pid = proc.running_pid()
    assert pid is not None, f"{proc.name} is not running"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: proc.running_pid() is None, 10, f"{proc.name} to die")


UNKNOWN_PLACEMENT = " (placing)"


def client(rpc_config, rng, users, acknowledged, refused, stop_at):
    with ClusterRpcProxy(rpc_config, timeout=60) as rpc:
        for _ in range(ORDERS_PER_CLIENT):
            if time.monotonic() > stop_at:
                return
            user = rng.choice(users)
            roll = rng.random()
            placing = False
            try:
                if roll < 0.12 and acknowledged:
                    order_id, owner = rng.choice(acknowledged)
                    rpc.orders.cancel_order(owner, order_id)
                    continue
                placing = True
                side = rng.choice(["buy", "sell"])
                if roll < 0.2:
                    kwargs = ({"quote_amount": str(rng.randint(6, 30))} if side == "buy"
                              else {"quantity": f"0.{rng.randint(1, 9):02d}"})
                    order = rpc.orders.place_order(user, MARKET, side, "market", **kwargs)
                else:
                    price = D(100) + D(rng.randint(-300, 300)) / 100
                    order = rpc.orders.place_order(
                        user, MARKET, side, "limit", quantity=f"0.{rng.randint(1, 30):02d}",
                        price=str(price), time_in_force="IOC" if roll < 0.3 else "GTC",
                        client_order_id=uuid.uuid4().hex[:20])
                acknowledged.append((order["order_id"], user))
            except CodedError as exc:  # a refusal, as its typed exception
                refused.append(type(exc).__name__)
            except Exception as exc:  # a process died under us: not acknowledged
                # A placement whose outcome is unknown may have placed its order.
                refused.append(type(exc).__name__ + (UNKNOWN_PLACEMENT if placing else ""))


def test_nothing_acknowledged_is_lost_when_processes_are_killed(
        processes, nameko_config, test_settings, principal_tokens):
    rng = random.Random(SEED)
    with ClusterRpcProxy(nameko_config, timeout=60) as rpc:
        wait_services_up(rpc)
        with as_admin(nameko_config, principal_tokens, timeout=60) as admin:
            empty_books(admin)
        deposits = {"BTC": D("50"), "USDT": D("100000")}
        users = [fund(rpc, {k: str(v) for k, v in deposits.items()}) for _ in range(USERS)]
        fees_before = fee_totals(test_settings, deposits)
        journal_start = journal_seq(test_settings)

        acknowledged, refused = [], []
        stop_at = time.monotonic() + 120
        clients = [eventlet.spawn(client, nameko_config, random.Random(SEED + n), users,
                                  acknowledged, refused, stop_at) for n in range(CLIENTS)]
        plan = ["matching-a", "orders-a", "matching-b", "wallets", "orders-b"]
        rng.shuffle(plan)
        killed = []
        for name in plan:
            eventlet.sleep(rng.uniform(0.5, 2.5))
            kill9(processes[name])
            killed.append((name, len(acknowledged)))
            eventlet.sleep(rng.uniform(0.3, 1.5))
            processes[name].start()
        for thread in clients:
            thread.wait()
        print(f"acknowledged {len(acknowledged)} orders, refused {Counter(refused)}, "
              f"killed {killed}")
        assert len(acknowledged) > 100
        assert {name for name, _ in killed} == set(SERVICES)

        # Quiesce: every acknowledged order reaches the engine; then sweep the book.
        ids = [order_id for order_id, _ in acknowledged]
        wait_for(lambda: journaled(test_settings, ids) == len(set(ids)), 120,
                 "every acknowledged order to be journaled")
        sweep_until_nothing_locked(test_settings, nameko_config, principal_tokens, rpc, users,
                                   deposits)

        # Every acknowledged order exists, in a final state, its command
        # journaled. "Once" is not a count per id (the primary key and the
        # journal's unique (market, command_id) make that 1 whatever
        # happens): an order placed twice is a second order id, so the
        # users' orders are compared with what was acknowledged. Those not
        # acknowledged must be explained by placements whose outcome is
        # unknown (the process died under the call).
        with psycopg.connect(test_settings.postgres_dsn()) as conn:
            rows = conn.execute(
                "SELECT order_id, status, quantity, filled_quantity FROM orders "
                "WHERE order_id = ANY(%s)", (ids,)).fetchall()
            commands = conn.execute(
                "SELECT count(*) FROM matching_journal WHERE market = %s AND command_id = ANY(%s)",
                (MARKET, [f"place:{i}" for i in ids])).fetchone()[0]
            everything = [r[0] for r in conn.execute(
                "SELECT order_id FROM orders WHERE user_id = ANY(%s) AND market = %s",
                (users, MARKET))]
        assert len(ids) == len(set(ids)) == len(rows) == commands
        unknown = sum(1 for r in refused if r.endswith(UNKNOWN_PLACEMENT))
        not_acknowledged = set(everything) - set(ids)
        assert len(not_acknowledged) <= unknown, (
            f"{len(not_acknowledged)} orders nobody was told of, {unknown} placements unanswered")
        for order_id, status, quantity, filled in rows:
            assert status in ("filled", "cancelled", "expired", "rejected"), (order_id, status)
            assert quantity is None or filled <= quantity

        assert len(trades_replayed_and_settled_once(test_settings, journal_start, ids)) > 20
        # The kills met the batched path: engine batches of several commands
        # (one journal timestamp each), their events one message per batch.
        batches = engine_batch_sizes(test_settings, journal_start)
        print(f"engine batches: {len(batches)}, sizes {Counter(batches).most_common(8)}")
        assert max(batches) > 1

        # Money: audit clean, totals conserved apart from fees moved to the fee account.
        assert rpc.wallets.audit() == []
        assert_conserved(test_settings, rpc, users, deposits, fees_before)


# ---------------------------------------------------------------- shared checks

def wait_services_up(rpc) -> None:
    def services_up():
        try:
            return all(rpc.orders.health() and rpc.matching.health() and
                       rpc.wallets.health() for _ in range(3))
        except Exception:  # not consuming yet: UnknownService, timeouts
            return False
    wait_for(services_up, 90, "services up")


def sweep_until_nothing_locked(settings, nameko_config, principal_tokens, rpc, users,
                               assets) -> None:
    """Cancel what rests until the users have no open order and nothing locked
    (the engine answering may be a standby a few commands behind)."""
    def swept():
        if open_orders(settings, users) == 0:
            return True
        # An admin verb: the test admin's fresh token (services.common.principals).
        with ClusterRpcProxy(nameko_config, timeout=60, context_data={
                "access_token": principal_tokens.person("admin")}) as admin:
            admin.orders.cancel_market_orders(MARKET)
        eventlet.sleep(1.0)
        return False
    wait_for(swept, 120, "all orders to end")
    wait_for(lambda: all(balance(rpc, u, a)[1] == 0 for u in users for a in assets), 60,
             "nothing locked")


def trades_replayed_and_settled_once(settings, journal_start, ids) -> list:
    """The trades of orders ``ids`` made after ``journal_start``: asserted
    equal to a fresh replay of the journal through the engine core (only
    these orders' trades: other tests share the market and the database, and
    may trade between the two reads), each settled under its trade key (a
    lost settlement shows as a missing key), and nothing settled that the
    journal does not hold."""
    mine = set(ids)
    replayed = replay_trades(settings, journal_start)
    recorded = recorded_trades(settings, first=replayed[0][0] if replayed else None)
    ours = lambda trades: [t for t in trades if t[3] in mine or t[4] in mine]  # noqa: E731
    assert ours(replayed) == ours(recorded)
    if not ours(replayed):
        return []
    # Every trade settled. Not "once" by a count: the ledger's unique key
    # per trade makes each count 1 whatever happens; money moved twice is
    # what audit() and assert_conserved catch.
    wait_for(lambda: all(settled_trades(settings, first=replayed[0][0]).get(tid)
                         for tid, *_ in ours(replayed)), 60, "every trade settled")
    settled = settled_trades(settings, first=replayed[0][0])
    number = lambda tid: int(tid.rsplit("-", 1)[1])  # noqa: E731
    assert {tid for tid in settled if number(tid) <= number(replayed[-1][0])} \
        <= {tid for tid, *_ in replayed}
    return ours(replayed)


def assert_conserved(settings, rpc, users, deposits, fees_before) -> None:
    """What ``users`` hold plus the fees paid since ``fees_before`` is what they were given."""
    fees_after = fee_totals(settings, deposits)
    for asset, deposited in deposits.items():
        held = sum(sum(balance(rpc, u, asset)) for u in users)
        fees = fees_after.get(asset, D(0)) - fees_before.get(asset, D(0))
        assert held + fees == D(deposited) * len(users), asset


# ---------------------------------------------------------------- queries

def journal_seq(settings) -> int:
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute("SELECT coalesce(max(seq), 0) FROM matching_journal WHERE market = %s",
                            (MARKET,)).fetchone()[0]


def settled_trades(settings, first) -> Counter:
    """How many ledger transactions settle each trade of the market from
    trade ``first`` on (the ledger's key ``trade:<market>:<trade id>``)."""
    prefix = f"trade:{MARKET}:"
    number = lambda tid: int(tid.rsplit("-", 1)[1])  # noqa: E731
    with psycopg.connect(settings.postgres_dsn()) as conn:
        # The engine's trade ids only (tests also settle made-up ones).
        tids = [k[len(prefix):] for (k,) in conn.execute(
            "SELECT idempotency_key FROM wallets.transactions WHERE idempotency_key ~ %s",
            (f"^{prefix}{MARKET}-[0-9]+$",))]
    return Counter(tid for tid in tids if number(tid) >= number(first))


def engine_batch_sizes(settings, after_seq) -> list[int]:
    """Commands per engine batch (a batch's journal rows share one at_ms)."""
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return [n for (n,) in conn.execute(
            "SELECT count(*) FROM matching_journal WHERE market = %s AND seq > %s "
            "GROUP BY at_ms", (MARKET, after_seq))]


def journaled(settings, ids) -> int:
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute("SELECT count(*) FROM matching_journal WHERE market = %s AND "
                            "command_id = ANY(%s)", (MARKET, [f"place:{i}" for i in ids])).fetchone()[0]


def open_orders(settings, users) -> int:
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute("SELECT count(*) FROM orders WHERE user_id = ANY(%s) AND status IN "
                            "('pending', 'new', 'partially_filled')", (users,)).fetchone()[0]


def fee_totals(settings, assets) -> dict:
    """The fee revenue in each of ``assets``, as wallets reports it (through
    its RPC-free view). Only those: other tests list and delist assets of
    their own, whose fee accounts outlive their listing."""
    from services.wallets.assets import ASSETS
    from services.wallets.ledger import FEE_REVENUE, system_owner
    with psycopg.connect(settings.postgres_dsn()) as conn:
        rows = conn.execute("SELECT asset, available FROM wallets.accounts WHERE owner = %s "
                            "AND asset = ANY(%s)",
                            (system_owner(FEE_REVENUE), list(assets))).fetchall()
    return {asset: D(minor).scaleb(-ASSETS[asset].scale) for asset, minor in rows}


def replay_trades(settings, after_seq) -> list:
    """Rebuild the book from the journal and collect the trades made after ``after_seq``."""
    with psycopg.connect(settings.postgres_dsn()) as conn:
        config = MarketConfig.from_dict(catalogue.load(conn).market(MARKET).engine_config())
        commands = conn.execute("SELECT seq, command FROM matching_journal WHERE market = %s "
                                "ORDER BY seq", (MARKET,)).fetchall()
    engine, trades = MatchingEngine(config), []
    for seq, command in commands:
        for event in engine.apply(command_from_dict(command)):
            if event[0] == TRADE_EXECUTED and seq > after_seq:
                _, _, tid, price, qty, _side, maker, _mu, taker, _tu = event
                trades.append((trade_id(MARKET, tid), D(config.ticks_to_price(price)),
                               D(config.lots_to_qty(qty)), maker, taker))
    return trades


def recorded_trades(settings, first) -> list:
    """The trades orders recorded (maker and taker fills), from trade ``first`` on."""
    number = lambda tid: int(tid.rsplit("-", 1)[1])  # noqa: E731
    with psycopg.connect(settings.postgres_dsn()) as conn:
        rows = conn.execute(
            "SELECT m.trade_id, m.price, m.quantity, m.order_id, t.order_id FROM order_fills m "
            "JOIN order_fills t ON t.trade_id = m.trade_id AND NOT t.is_maker "
            "WHERE m.is_maker AND m.market = %s", (MARKET,)).fetchall()
    if first is None:
        return []
    return sorted(((tid, price, qty, maker, taker) for tid, price, qty, maker, taker in rows
                   if number(tid) >= number(first)), key=lambda t: number(t[0]))
