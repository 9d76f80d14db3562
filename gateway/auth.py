"""API-key authentication of signed partner requests (Binance's scheme), for
``/api/v3`` and for API-key callers of ``/api/v1``.

A signed request carries ``X-MBX-APIKEY`` and the parameters ``timestamp``,
``recvWindow`` (optional) and ``signature`` = hex HMAC-SHA256(secret,
payload), where payload is the raw query string followed by the raw body,
each without its ``signature`` parameter, exactly as received (before any
URL-decoding: re-encoding or re-sorting would break clients that encode
differently). The body is read with ``request.get_data(cache=True)`` before
anything touches ``request.form``.

The checks are the users service's one rule (services/users/apikeys.py
``verify``): the key (unknown, revoked, expired, IP allow-list), then the
time window, then the HMAC in constant time, then the permission and the
account state, each refused with its own code; ``gateway/errors.py`` maps
those codes to Binance's. The gateway applies that rule itself to the key's
material cached in this process (gateway/keycache.py: fetched once per key
from users, dropped on users' key and account events); a request the cached
material does not accept is sent to ``users.verify_request``, which decides,
audits and refuses with the code. Binance checks the signature before the time window: a stale
request with a wrong signature gets -1021 here where Binance answers -1022
(both refuse it); likewise a recvWindow above 60000 is -1131 before any
key check, and one that is not a number of milliseconds -1100. A missing
signature is -1102, after an unknown key (-2015), as on Binance. Signatures
and secrets are never logged.

Client IP: the peer address, unless the peer is one of the trusted proxies
(``EXCHANGE_GATEWAY_TRUSTED_PROXIES``): then the right-most
``X-Forwarded-For`` entry that is not itself a trusted proxy.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from flask import current_app, g, request

from gateway.errors import MSG_BAD_KEY, ApiError, from_service_error
from gateway.keycache import DEFAULT_TTL_S, KeyCache, KeyEvents, Material, material_from
from gateway.rpc import now_ms
from services.users import apikeys
from services.users.errors import UsersError

HEX64 = re.compile(r"[0-9a-fA-F]{64}")
KEY_FORMAT = re.compile(r"[A-Za-z0-9]{64}")
NO_SIGNATURE = "0" * 64   # stands in for a missing or malformed one: never matches
READ, TRADE, WITHDRAW = "read", "trade", "withdraw"
# recvWindow in whole milliseconds (Binance also takes up to 3 decimals, for
# microseconds; not here). Anything else is Binance's -1100 for a malformed
# number, not -1131 "recvWindow must be less than 60000", which names only a
# window too large (users' rule, services/users/apikeys.py, decides that).
RECV_WINDOW_FORMAT = re.compile(r"[0-9]{1,20}")
MSG_RECV_WINDOW_FORMAT = ("Illegal characters found in parameter 'recvWindow'; legal range is "
                          f"'^{RECV_WINDOW_FORMAT.pattern}$'.")
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Principal:
    """Who a verified request acts for."""
    user_id: str
    key_id: str
    permissions: tuple[str, ...]


# ------------------------------------------------------------------ client IP

def trusted_proxies(app=None) -> tuple:
    app = app or current_app
    found = app.extensions.get("trusted_proxies")
    if found is None:
        raw = app.config["SETTINGS"].get("EXCHANGE_GATEWAY_TRUSTED_PROXIES", "") or ""
        found = tuple(ipaddress.ip_network(part.strip(), strict=False)
                      for part in raw.split(",") if part.strip())
        app.extensions["trusted_proxies"] = found
    return found


def _address(text: str):
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def resolve_client_ip(peer: str, forwarded_for: str | None, proxies: tuple) -> str:
    """The client's address: X-Forwarded-For is believed only from trusted proxies."""
    def trusted(address) -> bool:
        return address is not None and any(address in net for net in proxies)

    current = _address(peer or "")
    if not trusted(current) or not forwarded_for:
        return str(current) if current is not None else (peer or "")
    for hop in reversed(forwarded_for.split(",")[-16:]):
        address = _address(hop)
        if address is None:
            return str(current)     # a malformed hop: trust nothing further left
        current = address
        if not trusted(address):
            break
    return str(current)


# An IPv6 client is given a /64 (RFC 6177 and every ISP's practice: a home
# or a cloud machine has 2**64 addresses to send from), so a limit counted
# per address would be escaped by taking a new one per request.
IPV6_CLIENT_PREFIX = 64


def limits_address(ip: str) -> str:
    """The address a client's limits count for (request weight, bans, open
    connections, Socket.IO attempts): an IPv4 address itself, an IPv6
    address's /64 network. Not for an API key's IP allowlist, which names
    addresses as the key's owner wrote them."""
    address = _address(ip)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address) if address is not None else ip


def client_ip() -> str:
    found = getattr(g, "client_ip", None)
    if found is None:
        found = g.client_ip = resolve_client_ip(request.remote_addr or "",
                                                request.headers.get("X-Forwarded-For"),
                                                trusted_proxies())
    return found


# ------------------------------------------------------------------ parameters

def bad_param(name: str, message: str | None = None, code: int = -1100) -> ApiError:
    text = message or f"Illegal characters found in parameter '{name}'."
    return ApiError(400, "INVALID_INPUT", text, code, text, field=name)


def missing_param(name: str) -> ApiError:
    text = f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    return ApiError(400, "MISSING_PARAMETER", text, -1102, text, field=name)


# Binance's own codes for two empty parameters; any other is -1105.
EMPTY_CODES = {"newClientOrderId": (-1118, "New client order ID was empty."),
               "origClientOrderId": (-1119, "Original client order ID was empty.")}


def empty_param(name: str) -> ApiError:
    """An optional parameter sent with no value (``limit=``): refused, as
    Binance refuses it, never read as absent (a client that meant a value
    would get the default silently)."""
    code, text = EMPTY_CODES.get(name, (-1105, f"Parameter '{name}' was empty."))
    return ApiError(400, "INVALID_INPUT", text, code, text, field=name)


def _pairs(raw: bytes) -> list[tuple[str, str]]:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise bad_param("query", "Illegal characters found in the request.") from None
    try:
        return parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                         max_num_fields=64)
    except ValueError:
        raise ApiError(400, "INVALID_INPUT", "Too many parameters.", -1101,
                       "Too many parameters; expected at most 64.") from None


def raw_body() -> bytes:
    """The body as received (cached, so ``request.form`` still works after)."""
    return request.get_data(cache=True)


def form_body() -> bytes:
    """The body when it carries parameters (a form, as Binance's clients send)."""
    return raw_body() if request.mimetype in ("", FORM) else b""


def params() -> dict[str, str]:
    """Query and form parameters, merged; a name sent twice is -1101."""
    found = getattr(g, "binance_params", None)
    if found is not None:
        return found
    out: dict[str, str] = {}
    for name, value in _pairs(request.query_string) + _pairs(form_body()):
        if name in out:
            raise ApiError(400, "INVALID_INPUT", f"parameter {name} sent twice", -1101,
                           "Duplicate values for a parameter detected.", field=name)
        out[name] = value
    g.binance_params = out
    return out


def _without_signature(raw: bytes) -> bytes:
    return b"&".join(part for part in raw.split(b"&") if not part.startswith(b"signature="))


def signed_payload() -> str:
    """Binance's totalParams: the raw query then the raw body, without the
    ``signature`` parameter. A body that is not a form (JSON on /api/v1) is
    signed whole, as sent; its signature travels in the query string."""
    body = raw_body()
    if request.mimetype in ("", FORM):
        body = _without_signature(body)
    try:
        return (_without_signature(request.query_string) + body).decode("utf-8")
    except UnicodeDecodeError:
        raise bad_param("body", "Illegal characters found in the request.") from None


# ------------------------------------------------------------------ verification

def _refused(code: int, message: str, status: int) -> ApiError:
    return ApiError(status, "UNAUTHENTICATED" if status == 401 else "INVALID_SIGNATURE",
                    message, code, message)


KEY_REFUSALS = {"APIKEY_UNKNOWN", "APIKEY_REVOKED", "APIKEY_EXPIRED", "APIKEY_IP_NOT_ALLOWED",
                "APIKEY_PERMISSION_DENIED"}


def key_cache() -> KeyCache | None:
    """This process's cache of verified keys, and its event consumer, made on
    first use; None when ``EXCHANGE_GATEWAY_KEY_CACHE_TTL_S`` is 0."""
    extensions = current_app.extensions
    if "key_cache" not in extensions:
        settings = current_app.config["SETTINGS"]
        ttl_s = float(settings.get("EXCHANGE_GATEWAY_KEY_CACHE_TTL_S") or DEFAULT_TTL_S)
        cache = None
        if ttl_s > 0:
            cache = KeyCache(_fetch_material, ttl_s)
            extensions["key_events"] = KeyEvents(settings.amqp_uri(), cache)
            extensions["key_events"].start()
        extensions["key_cache"] = cache
    return extensions["key_cache"]


def _fetch_material(api_key: str) -> Material | None:
    from gateway.app import rpc
    with rpc() as services:
        return material_from(services.users.verification_material(api_key))


def _accepted_locally(material: Material | None, signature: str, values: dict,
                      permission: str) -> apikeys.Verified | None:
    """The verified request, or None when users must decide (and audit)."""
    if material is None or material.secret is None:
        return None
    try:
        return apikeys.verify(material.record, signature, signed_payload(),
                              values.get("timestamp"), values.get("recvWindow"), client_ip(),
                              permission, now_ms(), lambda: material.secret)
    except UsersError:
        return None


def authenticate(permission: str) -> Principal:
    """Verify the current request's key and signature for ``permission``
    (read, trade, withdraw); raises the Binance-coded refusal."""
    from gateway.app import rpc
    from services.common.errors import code_of

    api_key = request.headers.get("X-MBX-APIKEY", "")
    if not KEY_FORMAT.fullmatch(api_key):
        raise _refused(-2014, "API-key format invalid.", 401)
    values = params()
    recv_window = values.get("recvWindow")
    if recv_window == "":
        raise empty_param("recvWindow")
    if recv_window is not None and not RECV_WINDOW_FORMAT.fullmatch(recv_window):
        raise bad_param("recvWindow", MSG_RECV_WINDOW_FORMAT)
    signature = values.get("signature", "")
    well_formed = bool(HEX64.fullmatch(signature))
    cache = key_cache() if well_formed else None
    material = None
    if cache is not None:
        material = cache.material(api_key)
        verified = _accepted_locally(material, signature, values, permission)
        if verified is not None:
            return _principal(verified.user_id, verified.key_id, verified.permissions)
    try:
        with rpc() as services:
            verified = services.users.verify_request(
                api_key, signature if well_formed else NO_SIGNATURE, signed_payload(),
                values.get("timestamp"), values.get("recvWindow"), client_ip(), permission)
    except Exception as exc:
        code = code_of(exc)
        if code is None or code in KEY_REFUSALS:
            raise
        if not signature:
            raise missing_param("signature") from None
        if code == "REQUEST_MALFORMED" and not well_formed:
            raise from_service_error_with("SIGNATURE_INVALID", exc) from None
        if code == "REQUEST_MALFORMED":
            raise missing_param("timestamp") from None
        raise
    if material is not None:
        cache.forget(api_key)   # users accepted what the cached material refused: stale
    return _principal(verified["user_id"], verified["key_id"], verified["permissions"])


def identify_key() -> Principal:
    """Binance's MARKET_DATA security (``/api/v3/historicalTrades``): a valid
    API key in ``X-MBX-APIKEY`` and no signature. Missing or malformed:
    -2014, as Binance; unknown, revoked, expired, from outside its allow-list
    or of a closed account: the code ``verify`` gives it (-2015, ...), by the
    same rule (services/users/apikeys.py ``check_key``, ``check_grant`` with
    ``read``). The cached material decides only acceptance: a key it refuses
    is decided again on material fetched from users (a stale entry costs one
    RPC, never a wrong refusal). A refusal here is not audited by users
    (``verify_request`` audits signed requests): no signature was checked."""
    api_key = request.headers.get("X-MBX-APIKEY", "")
    if not KEY_FORMAT.fullmatch(api_key):
        raise _refused(-2014, "API-key format invalid.", 401)
    cache = key_cache()
    if cache is not None:
        try:
            return _key_principal(cache.material(api_key))
        except UsersError:
            cache.forget(api_key)
    try:
        return _key_principal(_fetch_material(api_key))
    except UsersError as exc:
        raise from_service_error(exc) from None


def _key_principal(material: Material | None) -> Principal:
    record = material.record if material is not None else None
    apikeys.check_key(record, client_ip(), now_ms())
    verified = apikeys.check_grant(record, READ)
    return _principal(verified.user_id, verified.key_id, verified.permissions)


def _principal(user_id: str, key_id: str, permissions) -> Principal:
    principal = Principal(user_id, key_id, tuple(permissions))
    g.principal = principal
    return principal


def from_service_error_with(code: str, exc: Exception) -> ApiError:
    from gateway.errors import TABLE
    status, binance_code, binance_msg = TABLE[code]
    return ApiError(status, code, "signature does not match", binance_code, binance_msg)


__all__ = ["Principal", "authenticate", "identify_key", "client_ip", "params", "signed_payload",
           "missing_param", "empty_param", "bad_param", "resolve_client_ip", "limits_address", "READ", "TRADE",
           "WITHDRAW", "MSG_BAD_KEY"]
