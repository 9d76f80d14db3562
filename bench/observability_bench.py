"""What the metrics and the JSON logs cost per call, in CPU time of the calling
process (time.process_time: other load on the machine does not count):

- a Nameko entrypoint timed by ServiceMetrics (histogram, error counter),
  without and with its JSON log line;
- one consumed message (batch timer, event lag, its JSON log line).

    PYTHONPATH=. .venv/bin/python bench/observability_bench.py [--calls 20000]

Compare with the CPU an order costs end to end (bench/orders_bench.py prints
"CPU per order until journaled and settled"). No servers needed.
"""
from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nameko.rpc import Rpc  # noqa: E402

from services.common import logs, metrics  # noqa: E402
from services.common.consumer import observed  # noqa: E402


class WorkerContext:
    """The attributes of a Nameko WorkerContext that ServiceMetrics reads."""

    def __init__(self, entrypoint):
        self.entrypoint = entrypoint
        self.context_data = {}
        self.args = ("user-1", "BTC-USDT")
        self.kwargs = {"quantity": "0.1", "price": "100"}


def per_call_us(provider: metrics.ServiceMetrics, calls: int) -> float:
    entrypoint = Rpc.__new__(Rpc)
    entrypoint.method_name = "place_order"
    started = time.process_time()
    for n in range(calls):
        worker = WorkerContext(entrypoint)
        provider.worker_setup(worker)
        provider.worker_result(worker, {"order_id": n, "user_id": "user-1"}, None)
        provider.worker_teardown(worker)
    total = time.process_time() - started
    started = time.process_time()
    for _ in range(calls):
        WorkerContext(entrypoint)
    return (total - (time.process_time() - started)) / calls * 1e6


def per_message_us(calls: int) -> float:
    handle = observed("bench.queue", lambda batch: None)
    batch = [("trade_executed", f"m{n}", {"trade_id": f"T-{n}", "maker_order_id": 1,
                                          "taker_order_id": 2, "executed_at": time.time() * 1000})
             for n in range(100)]
    started = time.process_time()
    for _ in range(calls // 100):
        handle(batch)
    return (time.process_time() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    calls = parser.parse_args().calls
    provider = metrics.ServiceMetrics()
    provider.service, provider.started, provider.children, provider.enabled = "bench", {}, {}, True
    print(f"entrypoint, metrics only:          {per_call_us(provider, calls):6.1f} us CPU per call")
    os.environ["EXCHANGE_LOG_DIR"] = tempfile.mkdtemp(prefix="observability-bench-")
    logs.install_for_process("bench")
    print(f"entrypoint, metrics + JSON line:   {per_call_us(provider, calls):6.1f} us CPU per call")
    print(f"consumed message + JSON line:      {per_message_us(calls):6.1f} us CPU per message")


if __name__ == "__main__":
    main()
