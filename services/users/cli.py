"""Operator and developer commands for the users service of a running stack.

    python -m services.users.cli signup USERNAME EMAIL --first-name A --last-name B
    python -m services.users.cli token USERNAME            # password grant (dev/tests)
    python -m services.users.cli create-key USERNAME LABEL [--permissions trade ...]
                                                        [--ip 203.0.113.0/24 ...]
    python -m services.users.cli sign SECRET 'symbol=BTC-USDT&timestamp=...'

Passwords are read from the terminal (or ``EXCHANGE_CLI_PASSWORD``), never
from the command line. ``token`` uses the backend client's password grant,
which the realm enables for tests and tools; people sign in on Keycloak's own
login page through the web client.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

from services.common.config import load_settings
from services.common.errors import run_command


def _password(prompt: str = "password: ") -> str:
    return os.environ.get("EXCHANGE_CLI_PASSWORD") or getpass.getpass(prompt)


def _rpc(settings):
    from nameko.standalone.rpc import ClusterRpcProxy
    return ClusterRpcProxy(settings.nameko_config(), timeout=60)


def _token(settings, username: str, password: str) -> str:
    from services.common.identity import backend_openid
    return backend_openid(settings).token(username, password)["access_token"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.users.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    signup = commands.add_parser("signup", help="create a trader (Keycloak, profile, wallets)")
    signup.add_argument("username")
    signup.add_argument("email")
    signup.add_argument("--first-name", required=True)
    signup.add_argument("--last-name", required=True)
    token = commands.add_parser("token", help="print an access token (password grant)")
    token.add_argument("username")
    key = commands.add_parser("create-key", help="create an API key; prints the secret once")
    key.add_argument("username")
    key.add_argument("label")
    key.add_argument("--permissions", nargs="*", default=["read"],
                     choices=["read", "trade", "withdraw"])
    key.add_argument("--ip", nargs="*", default=None, help="allow-list: IPs or CIDR networks")
    key.add_argument("--expires-at", type=int, default=None, help="ms since the epoch")
    sign = commands.add_parser("sign", help="HMAC-SHA256 signature of a payload")
    sign.add_argument("secret")
    sign.add_argument("payload")
    args = parser.parse_args(argv)
    return run_command(lambda: _run(args, load_settings()))


def _run(args, settings) -> int:
    from services.users import errors  # noqa: F401 -- typed errors back over RPC
    if args.command == "sign":
        from services.users.apikeys import sign as hmac_sign
        print(hmac_sign(args.secret, args.payload))
        return 0
    if args.command == "token":
        print(_token(settings, args.username, _password()))
        return 0
    if args.command == "signup":
        request = {"username": args.username, "email": args.email, "password": _password(),
                   "first_name": args.first_name, "last_name": args.last_name}
        with _rpc(settings) as rpc:
            print(json.dumps(rpc.users.sign_up(request), indent=2))
        return 0
    if args.command == "create-key":
        access_token = _token(settings, args.username, _password())
        request = {"label": args.label, "permissions": args.permissions,
                   "ip_allowlist": args.ip, "expires_at": args.expires_at}
        with _rpc(settings) as rpc:
            print(json.dumps(rpc.users.create_api_key(access_token, request), indent=2))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
