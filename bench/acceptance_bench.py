"""One acceptance transaction, alone: what it costs PostgreSQL and the orders
process per batch, fixed and per order (issue 18).

The closed loop of bench/order_path_bench.py moves by a fifth between rounds
of the same code on a shared machine, so a change of a few per cent in one
hop cannot be judged there. This bench runs orders' real acceptance
(``OrdersService`` validation, then ``Acceptance._transaction``: the orders,
their holds through wallets' contract, the engine commands in the outbox)
on the order-path bench's database, each batch inside a transaction that is
rolled back (nothing is written, nothing reaches an engine), and reads
exactly what each batch cost: the PostgreSQL backend's CPU from
/proc/<pid>/stat (the server runs on this machine) and this process's CPU.
Batches of several sizes alternate, round after round, and a line through
the medians gives the fixed cost of a batch and the cost of each order.

Needs the stack's servers (`make up`) and the order-path bench's namespace
(its funded users: run bench/order_path_bench.py once).

    .venv/bin/python bench/acceptance_bench.py                  # ~1 min
    .venv/bin/python bench/acceptance_bench.py --sizes 1,30 --rounds 8
"""
from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NAMESPACE = "exchange_orderpath"   # bench/order_path_bench.py's database
MARKET = "BTC-USDT"


def backend_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) the PostgreSQL backend ``pid`` used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares ``y = fixed + per_order * size`` through ``(size, y)``."""
    sizes = [size for size, _ in points]
    mean_x, mean_y = statistics.fmean(sizes), statistics.fmean(y for _, y in points)
    spread = sum((x - mean_x) ** 2 for x in sizes)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
    return mean_y - slope * mean_x, slope


class OneConnection:
    """A pool of the one connection, whose transaction the bench opened:
    acceptance's own transaction becomes a savepoint inside it."""

    def __init__(self, conn):
        self.conn = conn

    @contextlib.contextmanager
    def connection(self):
        yield self.conn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,5,30,60", help="orders per batch")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--orders", type=int, default=600,
                        help="orders per size and round (at least 10 batches)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if not sizes or min(sizes) < 1 or max(sizes) > 200 or args.rounds < 1 or args.orders < 1:
        raise SystemExit("sizes 1..200, rounds and orders at least 1")

    import psycopg

    from services.common import catalogue, json_codec
    from services.common.config import load_settings
    from services.matching.models import MarketConfig
    from services.orders.acceptance import Acceptance, Placement
    from services.orders.service import OrdersService, batch_answer
    json_codec.install()

    settings = load_settings()
    state = settings.run_dir / "bench" / "order_path" / "users.json"
    if not state.exists():
        raise SystemExit(f"no {state}: run bench/order_path_bench.py once first")
    users = [user["id"] for user in json.loads(state.read_text())["funded"]]
    conn = psycopg.connect(settings.postgres_dsn(NAMESPACE), autocommit=True)
    config = MarketConfig.from_dict(catalogue.load(conn).market(MARKET).engine_config())

    class Markets:
        @staticmethod
        def config(symbol):
            return config if symbol == MARKET else None

    # The service's validation and the process's acceptance, without Nameko:
    # the same methods a place_and_cancel call runs.
    service = OrdersService.__new__(OrdersService)
    service.catalog = Markets()
    acceptance = Acceptance.__new__(Acceptance)
    acceptance.pool = OneConnection(conn)
    pid = conn.info.backend_pid

    def one_batch(size: int, k: int) -> None:
        request_id = str(uuid.uuid4())
        placements = [service._batch_placement(i, {
            "user": users[(k * size + i) % len(users)], "market": MARKET,
            "side": "buy" if i % 2 else "sell", "type": "limit", "quantity": "0.1000",
            # Buys below, sells above the bench's reference price of 100: none trades.
            "price": f"{90 + i % 5}.00" if i % 2 else f"{110 + i % 5}.00",
            "client_order_id": f"a{uuid.uuid4().hex[:20]}"}, request_id, {})
            for i in range(size)]
        assert all(isinstance(p, Placement) for p in placements), placements[:1]
        conn.execute("BEGIN")
        try:
            outcomes = acceptance._transaction(placements)
        finally:
            conn.execute("ROLLBACK")
        answers = [batch_answer(outcome) for outcome in outcomes]
        if not all("order" in answer for answer in answers):
            raise SystemExit(f"an order was refused: {answers[0]}")
        json_codec.message_dumps(answers)

    for size in sizes:   # warm: the statements prepared, the caches read
        for k in range(3):
            one_batch(size, k)
    measured: dict[int, list[tuple[float, float, float]]] = {size: [] for size in sizes}
    for _ in range(args.rounds):
        for size in sizes:
            batches = max(10, args.orders // size)
            pg0, own0, wall0 = backend_cpu(pid), own_cpu(), time.perf_counter()
            for k in range(batches):
                one_batch(size, k)
            measured[size].append(((backend_cpu(pid) - pg0) / batches * 1e3,
                                   (own_cpu() - own0) / batches * 1e3,
                                   (time.perf_counter() - wall0) / batches * 1e3))
    conn.close()

    print(f"acceptance of {MARKET} limit orders, rolled back, {args.rounds} rounds "
          f"(median of the rounds), ms per batch:")
    print(" orders  PostgreSQL  orders process  wall")
    medians = {}
    for size in sizes:
        pg, own, wall = (statistics.median(m[i] for m in measured[size]) for i in range(3))
        medians[size] = (pg, own)
        spread = ", ".join(f"{m[0]:.2f}" for m in measured[size])
        print(f"  {size:5d}  {pg:10.2f}  {own:14.2f}  {wall:5.1f}   (PostgreSQL by round: {spread})")
    if len(sizes) > 1:
        for name, index in (("PostgreSQL", 0), ("orders process", 1)):
            fixed, per_order = fit([(size, medians[size][index]) for size in sizes])
            print(f"{name}: {fixed:.2f} ms per batch + {per_order * 1e3:.0f} us per order")


if __name__ == "__main__":
    main()
