"""Wallets benchmark against the real PostgreSQL of the local stack.

    PYTHONPATH=. .venv/bin/python bench/wallets_bench.py                 # defaults below
    PYTHONPATH=. .venv/bin/python bench/wallets_bench.py --batches 50 --holds 5000  # quick run

Runs in its own database, ``exchange_bench``, dropped and created afresh with
the wallets migrations at every run (``--keep-database`` reuses it), so the
figures do not depend on what earlier runs left and the test database stays
small.

* ``settle_trades``: ``--batches`` batches of ``--batch-size`` trades through
  ``PostgresLedger.settle_trades`` (the provider verb the RPC calls), one
  batch after the other as a market's settler would; trades alternate
  BTC-USDT / ETH-USDT between ``--users`` funded users (random maker, taker
  and side; 1 trade in 10 charges a fee tier). Reports trades/s and the
  per-batch latency percentiles.
  Then the same volume through ``PostgresLedger.settle_batches`` (one
  settler, pipelined: batch N+1 is built while batch N commits), called with
  ``--consumer-batches`` batches at a time as the ``TradeSettlement`` consumer
  calls it per handled message batch; then one settler per market running
  concurrently. The settlers use a pool of their own sized like the
  consumer's (5 connections), not the holds' pool of ``--concurrency``.
* ``hold``: ``--holds`` holds of 0.0001 BTC by ``--concurrency`` greenthreads
  (eventlet GreenPool) through ``PostgresLedger.hold`` on one pool of as many
  connections; each hold has its own ref, users are picked at random.
  Reports holds/s and per-call latency percentiles; then a quarter as many
  with group commit off (each hold one autocommitted statement), for comparison.

Every figure comes with the CPU it cost (this process and the PostgreSQL
backends of the bench's pool, from /proc) and the load average, because the
machine may be shared.

``--statements``: what PostgreSQL did per trade in the pipelined phase
(pg_stat_statements: calls, time, rows, WAL, shared buffers; nested
statements included) and what the bench's backends waited on (sampled);
``--explain``: every plan into the server's log (auto_explain, small runs).
``bench/wallets_ab.py`` runs this bench on an older commit and on this tree,
interleaved, and compares the CPU per trade.

Setup (untimed): users get accounts, deposits and holds large enough for
every trade. The audit runs at the end (untimed) and must be clean: the full
one (the audit RPC), then the periodic one from its checkpoint after 1,000
more holds.
"""
import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from services.common import catalogue  # noqa: E402
from services.common.config import load_settings  # noqa: E402
from services.common.migrations import apply_sql_migrations, service_sql_migrations  # noqa: E402
from services.common.postgres import make_pool  # noqa: E402
from services.wallets import schemas  # noqa: E402
from services.wallets.assets import ASSETS  # noqa: E402
from services.wallets.providers import PostgresLedger  # noqa: E402

BENCH_DB = "exchange_bench"
APPLICATION_NAME = "wallets-bench"


class CpuMeter:
    """CPU seconds used by this process and by the PostgreSQL backends serving
    the bench's pool (read from /proc: the server runs on this host), so a
    figure taken on a busy machine says how much work it cost, not only how
    long it waited."""

    def __init__(self, settings):
        with psycopg.connect(settings.postgres_dsn(BENCH_DB)) as conn:
            self.pids = [row[0] for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APPLICATION_NAME,))]
        self.ticks = os.sysconf("SC_CLK_TCK")

    def backends(self) -> float:
        total = 0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
        return total / self.ticks

    def start(self) -> None:
        self.wall, self.own, self.server = time.perf_counter(), time.process_time(), self.backends()
        self.load = os.getloadavg()[0]

    def report(self, units: int, unit: str) -> str:
        wall = time.perf_counter() - self.wall
        own, server = time.process_time() - self.own, self.backends() - self.server
        return (f"CPU per {unit}: bench process {own / units * 1e6:.0f} us + PostgreSQL "
                f"{server / units * 1e6:.0f} us; load average {self.load:.2f} -> "
                f"{os.getloadavg()[0]:.2f} (2 cores)")


class StatementProfile:
    """What PostgreSQL did for the bench's database over a phase, per trade
    (``--statements``): pg_stat_statements, top-level and nested (the
    ledger's triggers), with WAL records and bytes; the database's commits;
    the cluster's WAL flushes (other work's included). Read over the
    cluster's superuser socket (stack/servers.py), as the order path bench
    does. Tracking nested statements costs time of its own: a profiled run
    is for comparing what is done, not for its rate."""

    QUERY = ("SELECT queryid, toplevel, query, calls, total_exec_time, rows, wal_records, "
             "wal_bytes, wal_fpi, shared_blks_hit + shared_blks_read FROM pg_stat_statements "
             "WHERE dbid = %s")

    # What the bench's backends are doing, sampled every 2 ms by a process of
    # its own (the bench's hub must not pay for it) until SIGTERM, bounded in
    # time and count; prints {state: samples} as JSON.
    WAIT_SAMPLER = """
import json, signal, sys, time
import psycopg
stopped = []
signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
counts, samples = {}, 0
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    deadline = time.monotonic() + 600
    while not stopped and samples < 300000 and time.monotonic() < deadline:
        active = conn.execute(
            "SELECT coalesce(wait_event_type || ':' || wait_event, 'on CPU (or waiting for a core)') "
            "FROM pg_stat_activity WHERE datname = %s AND application_name = %s "
            "AND state = 'active'", (sys.argv[2], sys.argv[3])).fetchall()
        samples += 1
        for (what,) in active or [("no backend active (waiting for the bench)",)]:
            counts[what] = counts.get(what, 0) + 1
        time.sleep(0.002)
print(json.dumps({"samples": samples, "counts": counts}))
"""

    def __init__(self, settings):
        from stack import servers
        self.connect = lambda: servers.pg_admin_connect(settings)
        self.admin_dsn = (f"host={servers.pg_socket_dir(settings)} port={settings['EXCHANGE_POSTGRES_PORT']} "
                          f"user=postgres dbname=postgres")
        with self.connect() as conn:
            # Before the bench's pools connect: a session reads it at start.
            conn.execute(sql.SQL("ALTER DATABASE {} SET pg_stat_statements.track = 'all'").format(
                sql.Identifier(BENCH_DB)))
            self.dbid = conn.execute("SELECT oid FROM pg_database WHERE datname = %s",
                                     (BENCH_DB,)).fetchone()[0]

    def snapshot(self) -> dict:
        with self.connect() as conn:
            return {
                "statements": {(row[0], row[1]): row[2:] for row in conn.execute(self.QUERY, (self.dbid,))},
                "commits": conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datid = %s",
                                        (self.dbid,)).fetchone()[0],
                "wal_syncs": conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()[0],
            }

    def start(self) -> None:
        self.before = self.snapshot()
        self.sampler = subprocess.Popen(
            [sys.executable, "-c", self.WAIT_SAMPLER, self.admin_dsn, BENCH_DB, APPLICATION_NAME],
            stdout=subprocess.PIPE, text=True)

    def waits(self) -> str:
        self.sampler.send_signal(signal.SIGTERM)
        out, _ = self.sampler.communicate(timeout=30)
        found = json.loads(out)
        total = found["samples"] or 1
        return f"{found['samples']} samples: " + ", ".join(
            f"{what} {count / total:.0%}" for what, count
            in sorted(found["counts"].items(), key=lambda kv: -kv[1]))

    def report(self, trades: int, elapsed: float) -> None:
        waits = self.waits()
        after = self.snapshot()
        rows = []
        for key, (query, *counters) in after["statements"].items():
            _, *old = self.before["statements"].get(key, (query, 0, 0.0, 0, 0, 0, 0, 0))
            grown = [a - b for a, b in zip(counters, old)]
            if grown[0] > 0:
                rows.append((key[1], " ".join(query.split())[:90], *grown))
        top = [r for r in rows if r[0]]
        exec_ms = sum(r[3] for r in top)
        wal_records = sum(r[5] for r in top)
        wal_bytes = sum(r[6] for r in top)
        blocks = sum(r[8] for r in top)  # nested statements' included
        print(f"  PostgreSQL per trade (pg_stat_statements, {trades} trades): top-level execution "
              f"{exec_ms / trades * 1e3:.1f} us ({exec_ms / 1e3 / elapsed:.0%} of the wall time), "
              f"WAL {wal_records / trades:.2f} records / {wal_bytes / trades:.0f} bytes "
              f"(full-page images {sum(r[7] for r in top) / trades:.3f}), shared buffers "
              f"{blocks / trades:.1f} accessed, commits "
              f"{(after['commits'] - self.before['commits']) / trades:.4f}, cluster WAL flushes "
              f"{(after['wal_syncs'] - self.before['wal_syncs']) / trades:.4f} (others' included)")
        print(f"  the bench's PostgreSQL backends while it ran (pg_stat_activity, {waits})")
        print("    top  calls/trade  us/trade  rows/trade  WAL rec/trade  WAL B/trade  blocks/trade  statement")
        for toplevel, query, calls, ms, nrows, records, wbytes, _fpi, blocks in sorted(
                rows, key=lambda r: (not r[0], -r[3]))[:16]:
            print(f"    {'yes' if toplevel else ' no'}  {calls / trades:11.4f}  {ms / trades * 1e3:8.2f}"
                  f"  {nrows / trades:10.3f}  {records / trades:13.2f}  {wbytes / trades:11.0f}"
                  f"  {blocks / trades:12.2f}  {query}")


def explain_into_server_log(settings) -> None:
    """Sessions opened from now on in the bench's database log each
    statement's plan, run with ANALYZE and BUFFERS, nested statements (the
    ledger's triggers) included: the plans of two trees side by side."""
    from stack import servers
    with servers.pg_admin_connect(settings) as conn:
        for name, value in (("session_preload_libraries", "auto_explain"),
                            ("auto_explain.log_min_duration", "0"),
                            ("auto_explain.log_analyze", "on"),
                            ("auto_explain.log_buffers", "on"),
                            ("auto_explain.log_nested_statements", "on")):
            conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(BENCH_DB), sql.Identifier(name), sql.Literal(value)))


def percentiles(samples_s: list[float]) -> str:
    ordered = sorted(samples_s)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return (f"p50 {at(0.50):.2f} ms  p95 {at(0.95):.2f} ms  p99 {at(0.99):.2f} ms  "
            f"max {ordered[-1] * 1000:.2f} ms")


def machine(settings) -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    with psycopg.connect(settings.postgres_dsn(BENCH_DB)) as conn:
        server = conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
        commit = conn.execute("SHOW synchronous_commit").fetchone()[0]
        fsync = conn.execute("SHOW fsync").fetchone()[0]
    return (f"{platform.node()}: {os.cpu_count()} x {cpu}, Python {platform.python_version()}, "
            f"{server} (fsync={fsync}, synchronous_commit={commit}), same host")


def prepare_database(settings, fresh: bool) -> None:
    with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
        if fresh:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(BENCH_DB)))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    with psycopg.connect(settings.postgres_dsn(BENCH_DB)) as conn:
        # Every service's schema: the ledger's triggers are function files,
        # and holds read the registry's asset scales.
        apply_sql_migrations(conn, service_sql_migrations())


def fund_users(ledger: PostgresLedger, count: int) -> list[str]:
    """Users with plenty of every asset, most of it locked (as open orders would)."""
    users = []
    pool = eventlet.GreenPool(16)

    def one(_):
        user = f"bench-{uuid.uuid4()}"
        ledger.open_accounts(user)
        for code, whole in (("BTC", 10_000), ("ETH", 100_000), ("USDT", 10 ** 10)):
            asset = ASSETS[code]
            amount = whole * asset.unit
            address = ledger.deposit_address(user, asset)["address"]
            txid = uuid.uuid4().hex * 2
            txid = txid if asset.chain == "bitcoin" else "0x" + txid
            ledger.credit_deposit(asset, address, amount, txid, asset.confirmations)
            ledger.hold(user, asset, amount // 2, f"bench-setup-{user}-{code}")
        return user

    for user in pool.imap(one, range(count)):
        users.append(user)
    for user in users[::10]:
        ledger.set_fee_tier(user, "vip1")
    return users


def make_batches(users: list[str], batches: int, size: int, rng: random.Random) -> list:
    run = uuid.uuid4().hex[:12]
    result = []
    sequence = 0
    for _ in range(batches):
        raw = []
        for _ in range(size):
            sequence += 1
            maker, taker = rng.sample(users, 2)
            btc = sequence % 2 == 0
            raw.append({
                "trade_id": f"{run}-{sequence}",
                "market": "BTC-USDT" if btc else "ETH-USDT",
                "price": f"{rng.randint(2_900_000, 3_100_000) / 100:.2f}" if btc
                else f"{rng.randint(190_000, 210_000) / 100:.2f}",
                "quantity": f"{rng.randint(1, 500) / 10_000:.4f}",
                "taker_side": rng.choice(("buy", "sell")),
                "maker_user_id": maker,
                "taker_user_id": taker,
            })
        result.append(schemas.load_trades(raw))
    return result


def timed_calls(call, chunks: list, meter: CpuMeter) -> tuple[float, list[float]]:
    """``call(chunk)`` for every chunk, one after the other: (elapsed, latencies)."""
    latencies = []
    meter.start()
    started = time.perf_counter()
    for chunk in chunks:
        t0 = time.perf_counter()
        call(chunk)
        latencies.append(time.perf_counter() - t0)
    return time.perf_counter() - started, latencies


def report_settlement(title: str, batches: list, elapsed: float, per: str, latencies: list[float],
                      meter: CpuMeter) -> float:
    """Print a settlement figure (``title`` may name ``{trades}``); trades/s."""
    trades = sum(len(b) for b in batches)
    print(f"{title.format(trades=trades)}: {trades / elapsed:,.0f} trades/s ({elapsed:.2f} s)")
    print(f"  {per}: {percentiles(latencies)}")
    print(f"  {meter.report(trades, 'trade')}")
    return trades / elapsed


def bench_settle(ledger: PostgresLedger, batches: list, meter: CpuMeter) -> float:
    for batch in batches[:3]:  # warm-up: prepared statements, caches
        ledger.settle_trades(batch)
    timed = batches[3:]
    elapsed, latencies = timed_calls(ledger.settle_trades, timed, meter)
    return report_settlement(f"settle_trades: {{trades}} trades in {len(timed)} batches of "
                             f"{len(timed[0])}, one settler", timed, elapsed, "per batch", latencies,
                             meter)


def bench_settle_pipelined(ledger: PostgresLedger, batches: list, per_call: int,
                           meter: CpuMeter, profile: "StatementProfile | None" = None) -> float:
    """One settler, pipelined (settle_batches), ``per_call`` batches per call;
    with ``profile``, PostgreSQL's statements of the timed calls per trade."""
    ledger.settle_batches(batches[:3])  # warm-up
    timed = batches[3:]
    calls = [timed[i:i + per_call] for i in range(0, len(timed), per_call)]
    if profile is not None:
        profile.start()
    elapsed, latencies = timed_calls(ledger.settle_batches, calls, meter)
    rate = report_settlement(f"settle_batches: {{trades}} trades in {len(timed)} batches of "
                             f"{len(timed[0])}, one settler, pipelined, {per_call} batches per call",
                             timed, elapsed, f"per call of {per_call} batches", latencies, meter)
    if profile is not None:
        profile.report(sum(len(b) for b in timed), elapsed)
    return rate


def bench_settle_per_market(ledger: PostgresLedger, batches: list, meter: CpuMeter) -> float:
    """One settler per market, concurrently (as the exchange runs them)."""
    by_market: dict[str, list] = {}
    for batch in batches:
        for trade in batch:
            by_market.setdefault(trade.market.symbol, []).append(trade)
    size = len(batches[0])
    queues = {market: [trades[i:i + size] for i in range(0, len(trades), size)]
              for market, trades in by_market.items()}
    latencies = []

    def settler(market):
        for batch in queues[market]:
            t0 = time.perf_counter()
            ledger.settle_trades(batch)
            latencies.append(time.perf_counter() - t0)

    meter.start()
    started = time.perf_counter()
    pool = eventlet.GreenPool(len(queues))
    for market in queues:
        pool.spawn_n(settler, market)
    pool.waitall()
    elapsed = time.perf_counter() - started
    trades = sum(len(t) for t in by_market.values())
    print(f"settle_trades: {trades} trades in batches of {size}, one settler per market "
          f"({', '.join(sorted(queues))}) concurrently: {trades / elapsed:,.0f} trades/s ({elapsed:.2f} s)")
    print(f"  per batch: {percentiles(latencies)}")
    print(f"  {meter.report(trades, 'trade')}")
    return trades / elapsed


def bench_hold(ledger: PostgresLedger, users: list[str], holds: int, concurrency: int,
               rng: random.Random, meter: CpuMeter) -> float:
    btc = ASSETS["BTC"]
    run = uuid.uuid4().hex[:12]
    picks = [rng.choice(users) for _ in range(holds)]
    latencies = []

    def one(i):
        t0 = time.perf_counter()
        ledger.hold(picks[i], btc, 10_000, f"bench-hold-{run}-{i}")
        latencies.append(time.perf_counter() - t0)

    pool = eventlet.GreenPool(concurrency)
    for i in range(min(200, holds)):  # warm-up
        pool.spawn_n(one, i)
    pool.waitall()
    latencies.clear()
    meter.start()
    started = time.perf_counter()
    for i in range(200, holds):
        pool.spawn_n(one, i)
    pool.waitall()
    elapsed = time.perf_counter() - started
    done = holds - 200
    mode = "group commit" if ledger._movements is not None else "one statement each"
    print(f"hold: {done} holds, {concurrency} concurrent callers ({mode}): {done / elapsed:,.0f} holds/s "
          f"({elapsed:.2f} s)")
    print(f"  per call: {percentiles(latencies)}")
    print(f"  {meter.report(done, 'hold')}")
    return done / elapsed


def bench_periodic_audit(ledger: PostgresLedger, users: list[str], rng: random.Random) -> list:
    """The periodic audit (``audit_since_checkpoint``) once its checkpoint has
    caught up with the ledger, after 1,000 more holds: its cost follows what
    was written since, not the ledger's size (the full audit above)."""
    for _ in range(50):  # the first run takes a candidate, the next moves to it
        ledger.audit_since_checkpoint()
        with ledger.pool.connection() as conn:
            through, candidate = conn.execute(
                "SELECT through_id, candidate_id FROM wallets.audit_checkpoint").fetchone()
        if through == candidate:
            break
        time.sleep(0.1)
    btc = ASSETS["BTC"]
    run = uuid.uuid4().hex[:12]
    for i in range(1000):
        ledger.hold(rng.choice(users), btc, 10_000, f"bench-audit-{run}-{i}")
    t0 = time.perf_counter()
    findings = ledger.audit_since_checkpoint()
    print(f"periodic audit, checkpointed, 1,000 holds after its checkpoint: "
          f"{'clean' if not findings else findings} ({time.perf_counter() - t0:.2f} s, untimed)")
    return findings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--holds", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--consumer-batches", type=int, default=10,
                        help="batches per settle_batches call (TradeSettlement: 1,000 messages "
                             "in batches of 100)")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every measurement this many times (fresh trades and refs each time)")
    parser.add_argument("--only", choices=("settle", "hold"))
    parser.add_argument("--keep-database", action="store_true",
                        help=f"reuse {BENCH_DB} as the last run left it (default: start afresh)")
    parser.add_argument("--statements", action="store_true",
                        help="profile the pipelined settler's statements per trade "
                             "(pg_stat_statements; slows PostgreSQL: not for rates)")
    parser.add_argument("--explain", action="store_true",
                        help="every statement's plan, with ANALYZE and BUFFERS, nested ones "
                             "included, into the server's log (auto_explain; small runs only)")
    parser.add_argument("--no-periodic-audit", action="store_true",
                        help="skip the checkpointed audit at the end (bench/wallets_ab.py, for "
                             "trees from before it)")
    args = parser.parse_args()

    settings = load_settings()
    prepare_database(settings, fresh=not args.keep_database)
    # The ledger's assets are the registry's (its seed lists BTC, ETH, USDT).
    catalogue.load_from_settings(settings, BENCH_DB)
    profile = StatementProfile(settings) if args.statements else None
    if args.explain:
        explain_into_server_log(settings)
    pool = make_pool(settings, BENCH_DB, min_size=args.concurrency, max_size=args.concurrency,
                     name="wallets-bench", kwargs={"application_name": APPLICATION_NAME})
    ledger = PostgresLedger(pool)
    ledger.ensure_system_accounts()
    settle_pool = make_pool(settings, BENCH_DB, min_size=5, max_size=5, name="wallets-bench-settle",
                            kwargs={"application_name": APPLICATION_NAME})
    settler = PostgresLedger(settle_pool)
    meter = CpuMeter(settings)
    rng = random.Random(args.seed)
    print(f"machine: {machine(settings)}")
    t0 = time.perf_counter()
    users = fund_users(ledger, args.users)
    print(f"setup: {len(users)} funded users in {time.perf_counter() - t0:.1f} s (untimed)")
    figures: dict[str, list[float]] = {}
    solo = PostgresLedger(pool, group_commit=False)
    for _ in range(args.repeat):
        if args.only in (None, "settle"):
            figures.setdefault("settle_trades, one settler (trades/s)", []).append(bench_settle(
                settler, make_batches(users, args.batches + 3, args.batch_size, rng), meter))
            figures.setdefault("settle_batches, one settler, pipelined (trades/s)", []).append(
                bench_settle_pipelined(settler, make_batches(users, args.batches + 3, args.batch_size, rng),
                                       args.consumer_batches, meter, profile))
            figures.setdefault("settle_trades, one settler per market (trades/s)", []).append(
                bench_settle_per_market(settler, make_batches(users, args.batches, args.batch_size, rng),
                                        meter))
        if args.only in (None, "hold"):
            figures.setdefault("hold, group commit (holds/s)", []).append(
                bench_hold(ledger, users, args.holds + 200, args.concurrency, rng, meter))
            figures.setdefault("hold, one statement each (holds/s)", []).append(
                bench_hold(solo, users, args.holds // 4 + 200, args.concurrency, rng, meter))
    if args.repeat > 1:
        print(f"summary of {args.repeat} runs (best / median):")
        for name, values in figures.items():
            print(f"  {name}: {max(values):,.0f} / {statistics.median(values):,.0f}")
    t0 = time.perf_counter()
    findings = ledger.audit()
    print(f"audit: {'clean' if not findings else findings} ({time.perf_counter() - t0:.2f} s, untimed)")
    if not args.no_periodic_audit:
        findings += bench_periodic_audit(ledger, users, rng)
    settle_pool.close()
    pool.close()
    if findings:
        sys.exit(1)


if __name__ == "__main__":
    main()
