"""Matching engine benchmark: a seeded synthetic workload for one market.

    python bench/engine_bench.py                    # 1,000,000 commands, seed 1
    python bench/engine_bench.py --commands 20000   # quick smoke run
    python bench/engine_bench.py --interpreted      # the .py source, even if a compiled engine is built

Which implementation ran is printed first: the extension compiled by
``scripts/build_engine.py`` (Cython) when it is present, else the source.

Workload (generated before timing, by driving a shadow engine so that cancels
always target orders that are live at that point of the stream):

* build-up (untimed): ``--build-up`` passive limit orders around the mid
  (default 2,000: about the book this flow settles to, so the timed run starts
  in steady state; ``--build-up 10000`` starts from a far denser book);
* then the timed stream, per command:
  - 60% passive GTC limit orders: side 50/50, price = mid -/+ (1 + an
    exponential offset, mean 40 ticks), never crossing the opposite best;
  - 25% cancels of a uniformly chosen live order;
  - 10% aggressive limit orders (70% GTC, 30% IOC) priced at the n-th
    opposite level (n = 1: 50%, 2: 30%, 3-5: 20%) for the quantity of the
    levels before it plus 50-150% of that level's -- so they sweep n-1 levels
    and end inside, at or beyond the n-th (a GTC remainder rests);
  - 5% market orders for 30-100% of the quantity of the first 1-2 opposite
    levels (a quarter of the buys by the equivalent quote amount instead).
  The mid is a random walk of one tick per command (p = 1/2).
* 1,000 users (UUID-like strings), default self-trade prevention EXPIRE_MAKER,
  min notional 5 USDT, 10% price band, at most 500 open orders per user.

Only ``engine.apply`` is inside the timed region; every event tuple is built
and counted. The per-command latencies are measured with ``perf_counter_ns``
around each call (the clock's own cost, about one call or ~80 ns here, is
included); throughput is reported from that loop and from a second, untimed
loop over the same stream. The generated workload and the built-up book are
moved out of the garbage collector's way with ``gc.freeze()`` (as a service
would after restoring its book); the collector stays enabled for the run.
"""

import argparse
import gc
import importlib.util
import json
import os
import platform
import random
import resource
import sys
import time
import tracemalloc
import types
from array import array
from importlib.machinery import EXTENSION_SUFFIXES

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import services.matching.engine  # noqa: E402
import services.matching.models  # noqa: E402
from services.matching.engine import MatchingEngine  # noqa: E402
from services.matching.models import (  # noqa: E402
    ORDER_DONE,
    CancelOrder,
    MarketConfig,
    PlaceOrder,
)

CONFIG = MarketConfig(
    symbol="BTC-USDT",
    base_asset="BTC",
    quote_asset="USDT",
    tick_size="0.01",
    lot_size="0.00001",
    min_quantity="0.0001",
    max_quantity="100",
    min_notional="5",
    price_band_percent="10",
    max_open_orders=500,
    default_stp="EXPIRE_MAKER",
)
CATEGORIES = ("passive", "cancel", "aggressive", "market")
START_MID = 3_000_000  # 30,000.00 USDT in ticks
USERS = 1000
MEAN_OFFSET = 40  # ticks


# ---------------------------------------------------------------- implementation

INTERPRETED_PACKAGE = "interpreted_matching"


def load_interpreted_engine() -> types.ModuleType:
    """``services.matching.engine`` executed from its ``.py`` source, whatever is built.

    ``engine.py`` and ``book.py`` (the modules ``scripts/build_engine.py``
    compiles) are loaded from source as ``interpreted_matching.engine`` and
    ``.book``; ``models`` is the real ``services.matching.models``, so both
    implementations take the same command objects and emit equal events.
    """
    engine = sys.modules.get(INTERPRETED_PACKAGE + ".engine")
    if engine is not None:
        return engine
    folder = os.path.dirname(os.path.abspath(services.matching.models.__file__))
    package = types.ModuleType(INTERPRETED_PACKAGE)
    package.__path__ = []  # a package whose submodules are all registered below
    sys.modules[INTERPRETED_PACKAGE] = package
    sys.modules[INTERPRETED_PACKAGE + ".models"] = services.matching.models
    for name in ("book", "engine"):
        spec = importlib.util.spec_from_file_location(f"{INTERPRETED_PACKAGE}.{name}", os.path.join(folder, name + ".py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules[INTERPRETED_PACKAGE + ".engine"]


def implementation(module: types.ModuleType) -> str:
    """Which implementation ``module`` is: compiled (by what, from the build stamp) or interpreted."""
    path = module.__file__
    if not path.endswith(tuple(EXTENSION_SUFFIXES)):
        return f"interpreted ({os.path.basename(path)})"
    try:
        with open(os.path.join(os.path.dirname(path), ".compiled.json")) as f:
            compiler = json.load(f)["compiler"]
    except (OSError, ValueError, KeyError):
        compiler = "unknown compiler"
    return f"compiled ({compiler}, {os.path.basename(path)})"


# ---------------------------------------------------------------- workload


class Workload:
    """Generates the command stream, tracking live orders with a shadow engine."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.engine = MatchingEngine(CONFIG)
        self.users = [f"{self.rng.getrandbits(128):032x}" for _ in range(USERS)]
        self.mid = START_MID
        self.next_id = 1
        self.live: list = []  # live order ids, for uniform choice
        self.slot: dict = {}  # order id -> index in self.live
        self.mix = {"passive": 0, "cancel": 0, "aggressive": 0, "market": 0}
        self.kinds = bytearray()  # per generated command: index into CATEGORIES
        self.last_kind = "passive"

    def _apply(self, cmd) -> None:
        events = self.engine.apply(cmd)
        for ev in events:
            if ev[0] == ORDER_DONE:
                self._forget(ev[2])
        if type(cmd) is PlaceOrder and cmd.order_id in self.engine.book.orders and cmd.order_id not in self.slot:
            self.slot[cmd.order_id] = len(self.live)
            self.live.append(cmd.order_id)

    def _forget(self, oid) -> None:
        i = self.slot.pop(oid, None)
        if i is None:
            return
        last = self.live.pop()
        if last != oid:
            self.live[i] = last
            self.slot[last] = i

    def _new_id(self) -> int:
        oid = self.next_id
        self.next_id += 1
        return oid

    def _qty(self) -> int:
        return 10 * self.rng.randint(10, 500)  # 0.0001 .. 0.05 BTC

    def passive(self):
        rng = self.rng
        book = self.engine.book
        offset = 1 + int(rng.expovariate(1 / MEAN_OFFSET))
        if rng.random() < 0.5:
            price = self.mid - offset
            ask = book.best_ask()
            if ask is not None and price >= ask:
                price = ask - 1
            side = "buy"
        else:
            price = self.mid + offset
            bid = book.best_bid()
            if bid is not None and price <= bid:
                price = bid + 1
            side = "sell"
        self.mix["passive"] += 1
        self.last_kind = "passive"
        return PlaceOrder(self._new_id(), rng.choice(self.users), side, price=price, quantity=self._qty())

    def cancel(self):
        if not self.live:
            return self.passive()
        oid = self.live[self.rng.randrange(len(self.live))]
        self.mix["cancel"] += 1
        self.last_kind = "cancel"
        return CancelOrder(oid)

    def aggressive(self):
        rng = self.rng
        side = "buy" if rng.random() < 0.5 else "sell"
        r = rng.random()
        n = 1 if r < 0.5 else 2 if r < 0.8 else rng.randint(3, 5)
        levels = self.engine.depth(n)["sell" if side == "buy" else "buy"]
        if not levels:
            return self.passive()
        price = levels[-1][0]
        before = sum(q for _, q in levels[:-1])
        qty = before + max(1, levels[-1][1] * rng.randint(50, 150) // 100)
        tif = "GTC" if rng.random() < 0.7 else "IOC"
        self.mix["aggressive"] += 1
        self.last_kind = "aggressive"
        return PlaceOrder(self._new_id(), rng.choice(self.users), side, price=price, quantity=qty, time_in_force=tif)

    def market(self):
        rng = self.rng
        side = "buy" if rng.random() < 0.5 else "sell"
        levels = self.engine.depth(rng.randint(1, 2))["sell" if side == "buy" else "buy"]
        if not levels:
            return self.passive()
        qty = max(CONFIG.min_lots, sum(q for _, q in levels) * rng.randint(30, 100) // 100)
        self.mix["market"] += 1
        self.last_kind = "market"
        if side == "buy" and rng.random() < 0.25:
            quote = max(CONFIG.min_notional_units, qty * levels[0][0])
            return PlaceOrder(self._new_id(), rng.choice(self.users), side, "market", quote_amount=quote)
        return PlaceOrder(self._new_id(), rng.choice(self.users), side, "market", quantity=qty)

    def build_up(self, count: int) -> list:
        out = []
        for _ in range(count):
            cmd = self.passive()
            self._apply(cmd)
            out.append(cmd)
        self.mix = dict.fromkeys(self.mix, 0)
        self.kinds = bytearray()
        return out

    def stream(self, count: int) -> list:
        rng = self.rng
        out = []
        for _ in range(count):
            if rng.random() < 0.5:
                self.mid += 1 if rng.random() < 0.5 else -1
            r = rng.random()
            if r < 0.60:
                cmd = self.passive()
            elif r < 0.85:
                cmd = self.cancel()
            elif r < 0.95:
                cmd = self.aggressive()
            else:
                cmd = self.market()
            self._apply(cmd)
            out.append(cmd)
            self.kinds.append(CATEGORIES.index(self.last_kind))
        return out


# ---------------------------------------------------------------- measurement


# The engine class measured; main() swaps in the interpreted one for --interpreted.
# (The workload's shadow engine may be either: both give the same events.)
ENGINE = MatchingEngine


def fresh_engine(build_up: list) -> MatchingEngine:
    engine = ENGINE(CONFIG)
    for cmd in build_up:
        engine.apply(cmd)
    return engine


def collections() -> int:
    return sum(g["collections"] for g in gc.get_stats())


def timed_run(build_up: list, stream: list):
    """One ``perf_counter_ns`` pair around each ``apply``; returns
    (engine, latencies, wall_ns, events, gc_collections)."""
    engine = fresh_engine(build_up)
    latencies = array("q", bytes(8 * len(stream)))
    clock = time.perf_counter_ns
    apply = engine.apply
    events = 0
    gc.collect()
    gc.freeze()  # the workload and the built-up book are long-lived: keep them out of GC passes
    before = collections()
    i = 0
    start = clock()
    for cmd in stream:
        t0 = clock()
        out = apply(cmd)
        t1 = clock()
        latencies[i] = t1 - t0
        i += 1
        events += len(out)
    wall = clock() - start
    ran = collections() - before
    gc.unfreeze()
    return engine, latencies, wall, events, ran


def untimed_run(build_up: list, stream: list):
    engine = fresh_engine(build_up)
    apply = engine.apply
    clock = time.perf_counter_ns
    events = 0
    gc.collect()
    gc.freeze()
    cpu = time.process_time_ns()
    start = clock()
    for cmd in stream:
        events += len(apply(cmd))
    wall = clock() - start
    cpu = time.process_time_ns() - cpu
    gc.unfreeze()
    return engine, wall, cpu, events


def engine_bytes(engine: MatchingEngine) -> int:
    """Memory held by an engine rebuilt from ``engine``'s snapshot (no dead records)."""
    snapshot = engine.snapshot()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    restored = ENGINE.restore(snapshot)
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del restored
    return held


def percentile(sorted_values, q: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def describe(values) -> str:
    v = sorted(values)
    if not v:
        return "-"
    return (f"p50 {percentile(v, 0.50) / 1000:.1f}  p99 {percentile(v, 0.99) / 1000:.1f}  "
            f"p99.9 {percentile(v, 0.999) / 1000:.1f}  mean {sum(v) / len(v) / 1000:.1f}")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=1_000_000, help="timed commands (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    parser.add_argument("--build-up", type=int, default=2_000,
                        help="untimed passive orders placed first (default 2,000, about the steady-state book of this flow)")
    parser.add_argument("--repeat", type=int, default=1, help="untimed throughput runs, best reported (default 1)")
    parser.add_argument("--dump-latencies", metavar="FILE", help="write the per-command latencies (ns, int64) to FILE")
    parser.add_argument("--interpreted", action="store_true",
                        help="measure the engine's .py source even if a compiled extension is built")
    args = parser.parse_args(argv)

    global ENGINE
    module = load_interpreted_engine() if args.interpreted else services.matching.engine
    ENGINE = module.MatchingEngine

    print(f"machine:    {cpu_model()}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}; "
          f"Python {platform.python_version()} ({platform.python_implementation()})")
    print(f"engine:     {implementation(module)}")
    t = time.perf_counter()
    workload = Workload(args.seed)
    build_up = workload.build_up(args.build_up)
    stream = workload.stream(args.commands)
    kinds = workload.kinds
    gen_s = time.perf_counter() - t
    n = len(stream)
    mix = ", ".join(f"{k} {100 * v / n:.1f}%" for k, v in workload.mix.items())
    print(f"workload:   seed {args.seed}; {len(build_up):,} build-up orders, then {n:,} timed commands "
          f"({mix}); generated in {gen_s:.1f} s")

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    build_trades = fresh_engine(build_up).trade_seq
    engine, latencies, wall, events, gcs = timed_run(build_up, stream)
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trades = engine.trade_seq - build_trades
    secs = wall / 1e9
    print(f"timed loop: {n / secs:,.0f} commands/s, {trades / secs:,.0f} trades/s "
          f"({trades:,} trades, {events:,} events in {secs:.3f} s; {gcs} GC passes)")
    print(f"latency per command, us (perf_counter_ns pair included): {describe(latencies)}  "
          f"max {max(latencies) / 1000:.1f}")
    for k, name in enumerate(CATEGORIES):
        print(f"  {name:<11} {describe(lat for lat, kind in zip(latencies, kinds) if kind == k)}")
    if args.dump_latencies:
        with open(args.dump_latencies, "wb") as f:
            latencies.tofile(f)
    best = best_cpu = None
    for _ in range(max(1, args.repeat)):
        _, untimed_wall, untimed_cpu, untimed_events = untimed_run(build_up, stream)
        assert untimed_events == events, "runs diverged"
        best = untimed_wall if best is None else min(best, untimed_wall)
        best_cpu = untimed_cpu if best_cpu is None else min(best_cpu, untimed_cpu)
    print(f"untimed loop: {n / (best / 1e9):,.0f} commands/s, {trades / (best / 1e9):,.0f} trades/s ({best / 1e9:.3f} s); "
          f"per CPU second: {n / (best_cpu / 1e9):,.0f} commands/s")
    book = engine.book
    print(f"book after: {len(book.orders):,} open orders on {len(book.levels[0]):,} bid / "
          f"{len(book.levels[1]):,} ask levels; best {engine.best_bid()} / {engine.best_ask()} ticks")
    print(f"memory:     peak RSS {rss_peak / 1024:,.1f} MiB (ru_maxrss of the whole process; "
          f"{rss_before / 1024:,.1f} MiB before the timed run, the generated workload included); "
          f"engine state {engine_bytes(engine) / 1024:,.0f} KiB (tracemalloc, book restored from its snapshot)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
