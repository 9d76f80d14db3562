"""Operator commands for the registry of a running stack.

    python -m services.registry.cli list-asset SOL --scale 9 --chain ethereum \\
        --confirmations 12 --withdrawal-fee 0.01 --min-withdrawal 0.1 \\
        --daily-withdrawal-limit 10000 --admin demo-admin
    python -m services.registry.cli list-market SOL-USDT --tick 0.01 --lot 0.01 \\
        --maker-fee 0.001 --taker-fee 0.002 [--min-qty ...] [--max-qty ...] \\
        [--min-notional ...] [--price-band 20] [--status trading] --admin demo-admin
    python -m services.registry.cli update-market SOL-USDT --status halted --admin demo-admin
    python -m services.registry.cli halt SOL-USDT --admin demo-admin     (resume: trading again)
    python -m services.registry.cli announce SOL-USDT --admin demo-admin
    python -m services.registry.cli show

The changes need an access token of a person with the realm role ``admin``:
the CLI gets one with the backend client's password grant for ``--admin``
(or ``EXCHANGE_CLI_ADMIN``), the password read from the terminal or from
``EXCHANGE_CLI_PASSWORD``. `make up` seeds ``demo-admin`` (local dev only).
Decimals are passed as typed, as strings: never through a float.
Exit code 0 on success, 1 with ``CODE: message`` on a refusal.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

from services.common.config import load_settings
from services.common.errors import run_command


def _token(settings, username: str) -> str:
    from services.common.identity import backend_openid
    password = os.environ.get("EXCHANGE_CLI_PASSWORD") or getpass.getpass(f"{username} password: ")
    return backend_openid(settings).token(username, password)["access_token"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.registry.cli")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_admin(sub):
        sub.add_argument("--admin", default=os.environ.get("EXCHANGE_CLI_ADMIN"),
                         help="username of an admin (default: $EXCHANGE_CLI_ADMIN)")
        return sub

    asset = with_admin(commands.add_parser("list-asset", help="list an asset"))
    asset.add_argument("symbol")
    asset.add_argument("--scale", required=True, help="decimals of the minor unit")
    asset.add_argument("--chain", required=True, help="address format family (bitcoin, ethereum)")
    asset.add_argument("--confirmations", required=True)
    asset.add_argument("--withdrawal-fee", required=True)
    asset.add_argument("--min-withdrawal", required=True)
    asset.add_argument("--daily-withdrawal-limit", required=True)
    asset.add_argument("--no-deposits", action="store_true")
    asset.add_argument("--no-withdrawals", action="store_true")

    market = with_admin(commands.add_parser("list-market", help="list a market BASE-QUOTE"))
    market.add_argument("symbol")
    market.add_argument("--tick", required=True)
    market.add_argument("--lot", required=True)
    market.add_argument("--maker-fee", required=True)
    market.add_argument("--taker-fee", required=True)
    _limits(market)

    update = with_admin(commands.add_parser("update-market", help="change limits, fees, status"))
    update.add_argument("symbol")
    update.add_argument("--maker-fee")
    update.add_argument("--taker-fee")
    _limits(update)

    for verb, what in (("halt", "stop trading a market (status halted)"),
                       ("resume", "trade a halted market again (status trading)")):
        with_admin(commands.add_parser(verb, help=what)).add_argument("symbol")

    announce = with_admin(commands.add_parser(
        "announce", help="publish an asset's or market's current definition again "
                         "(a lost event); changes nothing"))
    announce.add_argument("symbol")

    commands.add_parser("show", help="print the catalogue")
    return parser


def _limits(sub) -> None:
    sub.add_argument("--min-qty")
    sub.add_argument("--max-qty")
    sub.add_argument("--min-notional")
    sub.add_argument("--price-band", help="percent around the reference price")
    sub.add_argument("--max-open-orders")
    sub.add_argument("--default-stp")
    sub.add_argument("--status", help="pre_trading, trading, halted or delisted")


def _market_fields(args) -> dict:
    fields = {"maker_fee": args.maker_fee, "taker_fee": args.taker_fee,
              "min_quantity": args.min_qty, "max_quantity": args.max_qty,
              "min_notional": args.min_notional, "price_band_percent": args.price_band,
              "max_open_orders": args.max_open_orders, "default_stp": args.default_stp,
              "status": args.status}
    return {k: v for k, v in fields.items() if v is not None}


def request(args) -> tuple[str, tuple]:
    """The RPC verb and its arguments after the token."""
    if args.command == "list-asset":
        return "list_asset", ({
            "symbol": args.symbol, "scale": args.scale, "chain": args.chain,
            "confirmations": args.confirmations, "withdrawal_fee": args.withdrawal_fee,
            "min_withdrawal": args.min_withdrawal,
            "daily_withdrawal_limit": args.daily_withdrawal_limit,
            "deposit_enabled": not args.no_deposits, "withdraw_enabled": not args.no_withdrawals},)
    if args.command == "list-market":
        base, _, quote = args.symbol.partition("-")
        return "list_market", ({"symbol": args.symbol, "base": base, "quote": quote,
                                "tick_size": args.tick, "lot_size": args.lot,
                                **_market_fields(args)},)
    if args.command in ("announce", "halt", "resume"):
        verb = {"halt": "halt_market", "resume": "resume_market"}.get(args.command, args.command)
        return verb, (args.symbol,)
    return "update_market", (args.symbol, _market_fields(args))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from services.registry import errors  # noqa: F401 -- typed errors back over RPC
    return run_command(lambda: _run(args, load_settings()))


def _run(args, settings) -> int:
    from nameko.standalone.rpc import ClusterRpcProxy
    if args.command == "show":
        with ClusterRpcProxy(settings.nameko_config(), timeout=30) as rpc:
            print(json.dumps(rpc.registry.get_catalogue(), indent=2))
        return 0
    if not args.admin:
        print("--admin USERNAME (or EXCHANGE_CLI_ADMIN) is required", file=sys.stderr)
        return 2
    verb, params = request(args)
    # Integers typed on the command line travel as digit strings; the
    # registry's grammar accepts both.
    token = _token(settings, args.admin)
    with ClusterRpcProxy(settings.nameko_config(), timeout=30) as rpc:
        print(json.dumps(getattr(rpc.registry, verb)(token, *params), indent=2))
    return 0

if __name__ == "__main__":
    sys.exit(main())
