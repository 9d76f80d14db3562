"""What a partner's bot waits for, one request after another: python-binance
(the real library) against the running gateway (`make up`), with fresh
traders funded by deposits in the demo namespace.

Each round, in turn: a LIMIT GTC bid 10 % under the reference price that
rests (FULL, python-binance's default: the gateway answers once the engine
has it resting), its cancel (DELETE /api/v3/order answers the final state,
CANCELED), and a LIMIT IOC buy that takes from a sell this bench rests at a
quiet price (FULL: the answer carries the fill, so the gateway waits for
the trade to settle and for market data to have it), then the same with
ACK (answered at acceptance). Printed: p50 / p90 / max in milliseconds per
kind, and the load average around the run. Sequential: it measures the
latency a bot sees, not a rate.

    PYTHONPATH=. .venv/bin/python bench/bot_latency_bench.py [--rounds 30]
"""
from __future__ import annotations

import argparse
import os
import time
from decimal import Decimal

from bench.common import percentile
from bench.gateway_bench import new_partner

SYMBOL, MARKET, TICK = "BTCUSDT", "BTC-USDT", Decimal("0.01")


def client(base_url: str, key: tuple[str, str]):
    from binance.client import Client
    made = Client(key[0], key[1], ping=False)
    made.API_URL = base_url.rstrip("/") + "/api"
    return made


def prices(rpc) -> tuple[str, str]:
    """A far bid (10 % under the reference: rests) and a quiet price strictly
    inside the spread (only this bench's orders meet there: the e2e tests'
    rule, native_testkit.price_inside_spread)."""
    from tests.e2e.gateway.native_testkit import price_inside_spread
    book = rpc.matching.get_depth(MARKET, 1)
    reference = Decimal(book["reference_price"] or book["buy"][0][0])
    return str((reference * Decimal("0.9")).quantize(TICK)), str(price_inside_spread(book, TICK))


def timed(samples: dict, kind: str, call):
    started = time.perf_counter()
    answer = call()
    samples.setdefault(kind, []).append((time.perf_counter() - started) * 1000)
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 1000:
        raise SystemExit("--rounds: 1 to 1000")
    from nameko.standalone.rpc import ClusterRpcProxy
    from services.common.config import load_settings
    settings = load_settings()
    base_url = f"http://127.0.0.1:{settings['EXCHANGE_GATEWAY_PORT']}"
    with ClusterRpcProxy(settings.nameko_config(), timeout=60) as rpc:
        far_bid, quiet = prices(rpc)
    bot = client(base_url, new_partner(settings, 0, {"USDT": "1000000"})["keys"][0])
    maker = client(base_url, new_partner(settings, 1, {"BTC": "100"})["keys"][0])
    rest = maker.create_order(symbol=SYMBOL, side="SELL", type="LIMIT", timeInForce="GTC",
                              quantity=str(Decimal("0.003") * args.rounds), price=quiet,
                              newOrderRespType="ACK")
    samples: dict[str, list[float]] = {}
    load_before = os.getloadavg()[0]
    try:
        for _ in range(args.rounds):
            placed = timed(samples, "LIMIT GTC that rests, FULL", lambda: bot.create_order(
                symbol=SYMBOL, side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.001",
                price=far_bid))
            cancelled = timed(samples, "its cancel (answers CANCELED)", lambda: bot.cancel_order(
                symbol=SYMBOL, orderId=placed["orderId"]))
            assert cancelled["status"] == "CANCELED", cancelled
            for resp in ("FULL", "ACK"):
                taken = timed(samples, f"LIMIT IOC that trades, {resp}", lambda: bot.create_order(
                    symbol=SYMBOL, side="BUY", type="LIMIT", timeInForce="IOC",
                    quantity="0.001", price=quiet, newOrderRespType=resp))
                if resp == "FULL":
                    assert taken["status"] == "FILLED" and len(taken["fills"]) == 1, taken
    finally:
        maker.cancel_order(symbol=SYMBOL, orderId=rest["orderId"])
    print(f"{args.rounds} rounds, one request after another, python-binance against "
          f"{base_url}; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    for kind, values in samples.items():
        print(f"  {kind:<34} p50 {percentile(values, 0.5):6.1f} ms   "
              f"p90 {percentile(values, 0.9):6.1f} ms   max {max(values):6.1f} ms")


if __name__ == "__main__":
    main()
