"""API-key request verification: the Binance signing scheme and one code per failure."""
import hmac

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from services.users import apikeys
from services.users.accounts import AccountState
from services.users.apikeys import KeyRecord, sign, verify
from services.users.errors import UsersError

# Binance's documented example (SIGNED endpoint security, HMAC keys).
BINANCE_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
BINANCE_PAYLOAD = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
                   "&recvWindow=5000&timestamp=1499827319559")
BINANCE_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"

NOW = 1_800_000_000_000
SECRET = "s" * 64


def record(**overrides):
    fields = dict(key_id="k-1", user_id="u-1", permissions=("read", "trade"), ip_allowlist=None,
                  expires_at_ms=None, revoked=False, account_state=AccountState.ACTIVE)
    fields.update(overrides)
    return KeyRecord(**fields)


def payload(ts=NOW, recv_window=None, extra="symbol=BTCUSDT&side=BUY"):
    parts = [extra]
    if recv_window is not None:
        parts.append(f"recvWindow={recv_window}")
    parts.append(f"timestamp={ts}")
    return "&".join(parts)


def check(rec=None, *, ts=NOW, recv_window=None, body=None, signature=None, secret=SECRET,
          client_ip="203.0.113.7", permission="read", now=NOW, secret_used=None):
    rec = record() if rec is None else rec
    body = payload(ts, recv_window) if body is None else body
    signature = sign(secret, body) if signature is None else signature
    calls = []

    def secret_of():
        calls.append(1)
        return secret_used or SECRET
    result = verify(rec, signature, body, ts, recv_window, client_ip, permission, now, secret_of)
    return result, calls


def code_of(**kwargs):
    with pytest.raises(UsersError) as caught:
        check(**kwargs)
    return caught.value.code


def test_signature_matches_binance_documented_example():
    assert sign(BINANCE_SECRET, BINANCE_PAYLOAD) == BINANCE_SIGNATURE


def test_binance_example_request_verifies_at_its_own_time():
    rec = record(permissions=("read", "trade"))
    verified = verify(rec, BINANCE_SIGNATURE, BINANCE_PAYLOAD, 1499827319559, 5000, "10.0.0.1",
                      "trade", 1499827319559 + 4000, lambda: BINANCE_SECRET)
    assert verified.user_id == "u-1" and verified.key_id == "k-1"


def test_query_string_and_body_are_signed_as_one_string():
    query, body = "symbol=LTCBTC&side=BUY", f"quantity=1&timestamp={NOW}"
    total = query + body
    result, _ = check(body=total, signature=sign(SECRET, total))
    assert result.permissions == ("read", "trade")


def test_upper_case_hex_signature_is_accepted():
    body = payload()
    result, _ = check(body=body, signature=sign(SECRET, body).upper())
    assert result.user_id == "u-1"


def test_wrong_secret_is_refused():
    assert code_of(secret="x" * 64) == "SIGNATURE_INVALID"


def test_tampered_payload_is_refused():
    body = payload()
    assert code_of(body=body.replace("BUY", "SELL"), signature=sign(SECRET, body)) == \
        "SIGNATURE_INVALID"


def test_comparison_is_constant_time(monkeypatch):
    seen = []
    real = hmac.compare_digest
    monkeypatch.setattr(apikeys.hmac, "compare_digest", lambda a, b: seen.append(1) or real(a, b))
    assert code_of(secret="x" * 64) == "SIGNATURE_INVALID"
    assert seen == [1]


@pytest.mark.parametrize("age,expected", [(0, None), (5000, None), (5001, "TIMESTAMP_STALE"),
                                          (-999, None), (-1000, "TIMESTAMP_IN_FUTURE")])
def test_timestamp_window_with_default_recv_window(age, expected):
    if expected is None:
        check(ts=NOW - age)
    else:
        assert code_of(ts=NOW - age) == expected


def test_recv_window_widens_the_window_up_to_a_minute():
    check(ts=NOW - 60000, recv_window=60000)
    assert code_of(ts=NOW - 60001, recv_window=60000) == "TIMESTAMP_STALE"


# "" is a value, not an absent window; "²" and "٥٠٠٠" are digits to
# str.isdigit() (int() refuses the first, reads the second as 5000).
@pytest.mark.parametrize("recv_window", [0, 60001, -5, "abc", 1.5, True, "", " ", "²", "5²",
                                         "٥٠٠٠", "+5000"])
def test_recv_window_out_of_range_is_refused(recv_window):
    body = f"symbol=X&recvWindow={recv_window}&timestamp={NOW}"
    assert code_of(recv_window=recv_window, body=body) == "RECV_WINDOW_INVALID"


@pytest.mark.parametrize("signature", ["", "abc", "g" * 64, None, 42])
def test_malformed_signature_is_refused_before_any_lookup(signature):
    with pytest.raises(UsersError) as caught:
        verify(None, signature, payload(), NOW, None, "1.2.3.4", "read", NOW, lambda: SECRET)
    assert caught.value.code == "REQUEST_MALFORMED"


@pytest.mark.parametrize("ts", ["yesterday", "²", "1²", str(NOW).translate(
    str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")), f"+{NOW}", f" {NOW}"])
def test_timestamp_must_be_ascii_digits(ts):
    assert code_of(ts=ts, body=f"timestamp={ts}") == "REQUEST_MALFORMED"


def test_leading_zeros_are_checked_as_signed():
    """The gateway passes the values as sent: "05000" signed is 5000 ms."""
    check(ts=f"0{NOW}", recv_window="05000")
    assert code_of(ts=NOW - 5001, recv_window="05000") == "TIMESTAMP_STALE"


def test_timestamp_given_separately_must_be_the_signed_one():
    body = payload(ts=NOW - 100000)        # an old signed request ...
    result = code_of(ts=NOW, body=body)    # ... replayed with a fresh unsigned timestamp
    assert result == "PAYLOAD_MISMATCH"


def test_recv_window_given_separately_must_be_the_signed_one():
    body = payload(recv_window=5000)
    assert code_of(recv_window=60000, body=body) == "PAYLOAD_MISMATCH"


def test_unknown_key():
    with pytest.raises(UsersError) as caught:
        verify(None, sign(SECRET, payload()), payload(), NOW, None, "1.2.3.4", "read", NOW,
               lambda: SECRET)
    assert caught.value.code == "APIKEY_UNKNOWN"


def test_revoked_key_is_refused_without_decrypting_the_secret():
    with pytest.raises(UsersError) as caught:
        verify(record(revoked=True), sign(SECRET, payload()), payload(), NOW, None, "1.2.3.4",
               "read", NOW, lambda: pytest.fail("secret must not be decrypted"))
    assert caught.value.code == "APIKEY_REVOKED"


def test_expired_key_is_refused_from_its_expiry_on():
    check(record(expires_at_ms=NOW + 1))
    assert code_of(rec=record(expires_at_ms=NOW)) == "APIKEY_EXPIRED"


@pytest.mark.parametrize("client_ip,allowed", [
    ("203.0.113.7", True), ("203.0.113.200", True), ("198.51.100.1", False),
    ("::ffff:203.0.113.9", True), ("2001:db8::1", True), ("2001:db9::1", False),
    ("not-an-ip", False), (None, False)])
def test_ip_allow_list(client_ip, allowed):
    rec = record(ip_allowlist=("203.0.113.0/24", "2001:db8::/32"))
    if allowed:
        check(rec, client_ip=client_ip)
    else:
        assert code_of(rec=rec, client_ip=client_ip) == "APIKEY_IP_NOT_ALLOWED"


def test_missing_permission_is_refused_after_the_signature():
    rec = record(permissions=("read",))
    assert code_of(rec=rec, permission="trade") == "APIKEY_PERMISSION_DENIED"
    # with a wrong secret the signature is what fails: permissions are only
    # disclosed to the key's holder
    assert code_of(rec=rec, permission="trade", secret="x" * 64) == "SIGNATURE_INVALID"


def test_frozen_owner_may_read_but_not_trade():
    rec = record(account_state=AccountState.FROZEN)
    check(rec, permission="read")
    assert code_of(rec=rec, permission="trade") == "USER_FROZEN"


def test_closed_owner_may_do_nothing():
    assert code_of(rec=record(account_state=AccountState.CLOSED)) == "USER_CLOSED"


def test_failures_are_checked_in_the_documented_order():
    # everything wrong at once: each fix reveals the next code
    rec = record(revoked=True, expires_at_ms=NOW - 1, ip_allowlist=("10.0.0.0/8",),
                 permissions=("read",), account_state=AccountState.FROZEN)
    args = dict(ts=NOW - 10_000, secret="x" * 64, client_ip="192.0.2.1", permission="trade")
    steps = [("APIKEY_REVOKED", dict(revoked=False)),
             ("APIKEY_EXPIRED", dict(expires_at_ms=None)),
             ("APIKEY_IP_NOT_ALLOWED", dict(ip_allowlist=None)),
             ("TIMESTAMP_STALE", "ts"),
             ("SIGNATURE_INVALID", "secret"),
             ("APIKEY_PERMISSION_DENIED", dict(permissions=("read", "trade"))),
             ("USER_FROZEN", dict(account_state=AccountState.ACTIVE))]
    for expected, fix in steps:
        assert code_of(rec=rec, **args) == expected
        if fix == "ts":
            args["ts"] = NOW
        elif fix == "secret":
            args.pop("secret")
        else:
            rec = record(**{**rec.__dict__, **fix})
    check(rec, **args)


def test_secret_is_decrypted_only_once_signature_checking_starts():
    _, calls = check()
    assert calls == [1]
    with pytest.raises(UsersError):
        check(ts=NOW - 10_000)


@hsettings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=80), st.integers(min_value=0, max_value=79),
       st.characters(blacklist_categories=("Cs",)))
def test_any_change_to_the_signed_payload_is_refused(extra, position, char):
    original = f"note={extra}&timestamp={NOW}"
    position %= len(original)
    changed = original[:position] + char + original[position + 1:]
    if changed == original:
        return
    with pytest.raises(UsersError) as caught:
        check(body=changed, signature=sign(SECRET, original))
    assert caught.value.code in ("SIGNATURE_INVALID", "PAYLOAD_MISMATCH")


def test_permissions_always_include_read_in_canonical_order():
    assert apikeys.normalize_permissions(["withdraw", "trade"]) == ("read", "trade", "withdraw")
    assert apikeys.normalize_permissions([]) == ("read",)
    with pytest.raises(UsersError) as caught:
        apikeys.normalize_permissions(["admin"])
    assert caught.value.code == "INVALID_REQUEST"


def test_allowlist_is_normalised_and_validated():
    assert apikeys.normalize_allowlist(["203.0.113.7", "10.1.2.3/8", "10.0.0.0/8"]) == \
        ("203.0.113.7/32", "10.0.0.0/8")
    assert apikeys.normalize_allowlist([]) is None
    with pytest.raises(UsersError):
        apikeys.normalize_allowlist(["300.1.1.1"])


def test_withdraw_keys_need_an_allow_list_and_keys_are_limited():
    with pytest.raises(UsersError) as caught:
        apikeys.check_new_key(("read", "withdraw"), None, None, NOW)
    assert caught.value.code == "APIKEY_WITHDRAW_NEEDS_IP_ALLOWLIST"
    apikeys.check_new_key(("read", "withdraw"), ("10.0.0.0/8",), NOW + 1, NOW)
    with pytest.raises(UsersError) as caught:
        apikeys.check_new_key(("read",), None, NOW, NOW)
    assert caught.value.code == "INVALID_REQUEST"
    apikeys.check_key_limit(29)
    with pytest.raises(UsersError) as caught:
        apikeys.check_key_limit(30)
    assert caught.value.code == "APIKEY_LIMIT_REACHED"


def test_generated_keys_are_64_letters_and_digits_and_differ():
    keys = {apikeys.generate_token() for _ in range(50)}
    assert len(keys) == 50
    assert all(apikeys.valid_key_format(k) for k in keys)
