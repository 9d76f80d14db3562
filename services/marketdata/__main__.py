"""Maintenance commands of the marketdata service.

    python -m services.marketdata rebuild --market BTC-USDT \\
        --start 2026-11-23T00:00:00Z --end 2026-11-25T00:00:00Z

``rebuild`` recomputes the candles of every interval for ``[start, end)``
from the trades table. It asks the running service (RPC ``rebuild_candles``),
one UTC day at a time, so the rebuild is serialised with live ingestion and
the service's in-memory candle state and cache stay consistent with it: the
candles of a market have a single writer (docs/marketdata.md). Times are ISO
8601 (UTC unless an offset is given) or epoch milliseconds.
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

DAY_MS = 86_400_000


def parse_time(text: str) -> int:
    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def day_chunks(start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) cut at UTC midnights: every piece is at most one day."""
    chunks, cursor = [], start
    while cursor < end:
        stop = min(end, cursor - cursor % DAY_MS + DAY_MS)
        chunks.append((cursor, stop))
        cursor = stop
    return chunks


def main(argv=None, nameko_config: dict | None = None, out=sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.marketdata")
    commands = parser.add_subparsers(dest="command", required=True)
    rebuild = commands.add_parser("rebuild", help="recompute candles from the trades table")
    rebuild.add_argument("--market", required=True)
    rebuild.add_argument("--start", required=True, type=parse_time)
    rebuild.add_argument("--end", required=True, type=parse_time)
    rebuild.add_argument("--service", default="marketdata",
                         help="the service's Nameko name (default marketdata)")
    rebuild.add_argument("--timeout", type=float, default=600.0,
                         help="seconds per one-day call (default 600)")
    args = parser.parse_args(argv)
    if args.start > args.end:
        parser.error("--start is after --end")

    from nameko.standalone.rpc import ClusterRpcProxy

    from services.common.config import load_settings
    config = nameko_config or load_settings().nameko_config()
    totals = {"trades": 0, "upserts": 0, "deletes": 0}
    with ClusterRpcProxy(config, timeout=args.timeout) as rpc:
        for start, end in day_chunks(args.start, args.end):
            result = getattr(rpc, args.service).rebuild_candles(args.market, start, end)
            for key in totals:
                totals[key] += result[key]
            print(f"{args.market} [{start}, {end}): {result['trades']} trades, "
                  f"{result['upserts']} candles written, {result['deletes']} deleted", file=out)
    print(f"{args.market}: {totals['trades']} trades, {totals['upserts']} candles written, "
          f"{totals['deletes']} deleted", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
