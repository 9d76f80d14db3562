"""Partner API keys: creation rules and request-signature verification (pure core).

Binance-compatible scheme, so partners can use existing SDKs:

* the key (``api_key``, 64 letters/digits) travels in the ``X-MBX-APIKEY``
  header; the secret (64 letters/digits) never travels after creation;
* the signed string (``payload``) is Binance's ``totalParams``: the query
  string, immediately followed by the urlencoded request body (no separator),
  without the ``signature`` parameter itself;
* ``signature`` = lowercase hex of HMAC-SHA256(key=secret as ASCII,
  msg=payload as UTF-8), compared in constant time;
* ``timestamp`` (ms since the epoch) and optional ``recvWindow`` (ms, default
  5000, at most 60000) are parameters inside the payload; the request is
  accepted when ``timestamp < now + 1000`` and ``now - timestamp <= recvWindow``.

``verify`` applies the checks in a fixed order and raises one distinct code
per failure (see ``verify``). Time is an input (``now_ms``); the secret is
decrypted lazily through ``secret_of`` so requests refused earlier never touch it.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import string
from dataclasses import dataclass
from typing import Callable, Iterable

from services.users.accounts import AccountState
from services.users.errors import error

READ, TRADE, WITHDRAW = "read", "trade", "withdraw"
PERMISSIONS = (READ, TRADE, WITHDRAW)
DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60000
FUTURE_TOLERANCE_MS = 1000
KEY_LENGTH = 64
MAX_KEYS_PER_USER = 30
MAX_ALLOWLIST_ENTRIES = 30
MAX_LABEL_LENGTH = 64

_ALPHABET = string.ascii_letters + string.digits
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_KEY_FORMAT = re.compile(r"^[A-Za-z0-9]{64}$")


# ---------------------------------------------------------------- creation

def generate_token(length: int = KEY_LENGTH) -> str:
    """A random string of letters and digits (used for both key and secret)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def normalize_permissions(requested: Iterable[str]) -> tuple[str, ...]:
    """The stored permission set: always includes ``read``; in canonical order."""
    wanted = set(requested or ())
    unknown = wanted - set(PERMISSIONS)
    if unknown:
        raise error("INVALID_REQUEST", f"unknown permissions {sorted(unknown)}; "
                                       f"choose among {list(PERMISSIONS)}")
    wanted.add(READ)
    return tuple(p for p in PERMISSIONS if p in wanted)


def normalize_allowlist(entries: Iterable[str] | None) -> tuple[str, ...] | None:
    """IPv4/IPv6 addresses or CIDR networks, normalised; None or empty = any IP."""
    if not entries:
        return None
    entries = list(entries)
    if len(entries) > MAX_ALLOWLIST_ENTRIES:
        raise error("INVALID_REQUEST", f"at most {MAX_ALLOWLIST_ENTRIES} allow-list entries")
    networks = []
    for entry in entries:
        try:
            networks.append(str(ipaddress.ip_network(str(entry).strip(), strict=False)))
        except ValueError:
            raise error("INVALID_REQUEST", f"not an IP address or network: {entry!r}") from None
    return tuple(dict.fromkeys(networks))


def check_new_key(permissions: tuple[str, ...], allowlist: tuple[str, ...] | None,
                  expires_at_ms: int | None, now_ms: int) -> None:
    """Rules on the requested key itself (checked before anything else)."""
    if WITHDRAW in permissions and not allowlist:
        raise error("APIKEY_WITHDRAW_NEEDS_IP_ALLOWLIST",
                    "a key that may withdraw must be restricted to an IP allow-list")
    if expires_at_ms is not None and expires_at_ms <= now_ms:
        raise error("INVALID_REQUEST", "expires_at must be in the future")


def check_key_limit(live_keys: int) -> None:
    if live_keys >= MAX_KEYS_PER_USER:
        raise error("APIKEY_LIMIT_REACHED", f"at most {MAX_KEYS_PER_USER} live keys per user")


# ---------------------------------------------------------------- signing

def sign(secret: str, payload: str) -> str:
    """What a client computes: hex HMAC-SHA256 of the payload with the secret."""
    return hmac.new(secret.encode("ascii"), payload.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    """What verification needs to know about a stored key and its owner."""
    key_id: str
    user_id: str
    permissions: tuple[str, ...]
    ip_allowlist: tuple[str, ...] | None
    expires_at_ms: int | None
    revoked: bool
    account_state: AccountState


@dataclass(frozen=True)
class Verified:
    key_id: str
    user_id: str
    permissions: tuple[str, ...]


def _as_int(value, name: str, code: str) -> int:
    if isinstance(value, bool):
        raise error(code, f"{name} must be an integer")
    if isinstance(value, int):
        return value
    # ASCII digits only: str.isdigit() also takes superscripts ("²", which
    # int() refuses) and other scripts' digits.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        return int(value)
    raise error(code, f"{name} must be an integer number of milliseconds")


def _ip_allowed(client_ip: str | None, allowlist: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address((client_ip or "").strip())
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(net) for net in allowlist)


def _signed_values(payload: str, name: str) -> list[str]:
    return re.findall(re.escape(name) + r"=([0-9]+)(?![0-9])", payload)


def _as_sent(value) -> str:
    """An integer parameter as it appears in a signed payload (already
    checked by ``_as_int``)."""
    return value if isinstance(value, str) else str(value)


def verify(record: KeyRecord | None, signature, payload, timestamp, recv_window,
           client_ip: str | None, permission: str, now_ms: int,
           secret_of: Callable[[], str]) -> Verified:
    """Accept a signed request or raise the reason, checked in this order:

    1. RECV_WINDOW_INVALID   recvWindow not an integer in 1..60000
    2. REQUEST_MALFORMED     timestamp not an integer, payload not a string,
                             signature not 64 hex digits
    3. APIKEY_UNKNOWN        no such key (``record`` is None)
    4. APIKEY_REVOKED
    5. APIKEY_EXPIRED        now >= expires_at
    6. APIKEY_IP_NOT_ALLOWED the key has an allow-list without client_ip
    7. TIMESTAMP_IN_FUTURE   timestamp >= now + 1000
    8. TIMESTAMP_STALE       now - timestamp > recvWindow
    9. PAYLOAD_MISMATCH      timestamp (and recvWindow when given) are not
                             parameters of the signed payload
    10. SIGNATURE_INVALID    HMAC differs (constant-time comparison)
    11. APIKEY_PERMISSION_DENIED  the key lacks ``permission``
    12. USER_CLOSED          always; USER_FROZEN for trade and withdraw
    """
    if permission not in PERMISSIONS:
        raise error("INVALID_REQUEST", f"permission must be one of {list(PERMISSIONS)}")
    # Absent is the default window; sent empty is a value that is not a
    # window (the gateway refuses ``recvWindow=`` with -1105 before asking).
    window = DEFAULT_RECV_WINDOW_MS if recv_window is None else \
        _as_int(recv_window, "recvWindow", "RECV_WINDOW_INVALID")
    if not 0 < window <= MAX_RECV_WINDOW_MS:
        raise error("RECV_WINDOW_INVALID", f"recvWindow must be 1..{MAX_RECV_WINDOW_MS} ms")
    ts = _as_int(timestamp, "timestamp", "REQUEST_MALFORMED")
    if not isinstance(payload, str):
        raise error("REQUEST_MALFORMED", "payload must be the signed query string and body")
    if not isinstance(signature, str) or not _HEX64.match(signature):
        raise error("REQUEST_MALFORMED", "signature must be 64 hexadecimal digits")

    check_key(record, client_ip, now_ms)

    if ts >= now_ms + FUTURE_TOLERANCE_MS:
        raise error("TIMESTAMP_IN_FUTURE", f"timestamp is {ts - now_ms} ms ahead of server time")
    if now_ms - ts > window:
        raise error("TIMESTAMP_STALE", f"timestamp is {now_ms - ts} ms old, outside recvWindow "
                                       f"{window} ms")
    # The values as sent (a gateway passes the text: "05000" was signed as
    # such), or as an RPC caller's integers print.
    if _as_sent(timestamp) not in _signed_values(payload, "timestamp") or (
            recv_window is not None
            and _as_sent(recv_window) not in _signed_values(payload, "recvWindow")):
        raise error("PAYLOAD_MISMATCH", "timestamp and recvWindow must be the signed ones")

    expected = sign(secret_of(), payload)
    if not hmac.compare_digest(expected, signature.lower()):
        raise error("SIGNATURE_INVALID", "signature does not match")

    return check_grant(record, permission)


def check_key(record: KeyRecord | None, client_ip: str | None, now_ms: int) -> None:
    """Checks 3-6 of ``verify``: the key exists, is neither revoked nor
    expired, and ``client_ip`` is in its allow-list. Alone (with
    ``check_grant``) they are Binance's MARKET_DATA security, a key with no
    signature (``/api/v3/historicalTrades``: gateway/auth.py ``identify_key``)."""
    if record is None:
        raise error("APIKEY_UNKNOWN", "no such API key")
    if record.revoked:
        raise error("APIKEY_REVOKED", "the API key was revoked")
    if record.expires_at_ms is not None and now_ms >= record.expires_at_ms:
        raise error("APIKEY_EXPIRED", "the API key has expired")
    if record.ip_allowlist and not _ip_allowed(client_ip, record.ip_allowlist):
        raise error("APIKEY_IP_NOT_ALLOWED", f"requests from {client_ip} are not allowed "
                                             "for this API key")


def check_grant(record: KeyRecord, permission: str) -> Verified:
    """Checks 11-12 of ``verify``: the key has ``permission`` and its owner's
    account allows it."""
    if permission not in record.permissions:
        raise error("APIKEY_PERMISSION_DENIED", f"this API key has no {permission!r} permission")
    if record.account_state is AccountState.CLOSED:
        raise error("USER_CLOSED", "the account is closed")
    if record.account_state is AccountState.FROZEN and permission != READ:
        raise error("USER_FROZEN", "the account is frozen")
    return Verified(record.key_id, record.user_id, record.permissions)


def valid_key_format(api_key) -> bool:
    return isinstance(api_key, str) and bool(_KEY_FORMAT.match(api_key))
