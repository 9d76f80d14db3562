"""wallets.hold_funds, the hold the orders service takes inside its own
transaction, against the real PostgreSQL: the same journal entry as the
provider's hold, the same refusals, nothing written on a refusal."""
import uuid

import eventlet
import psycopg
import pytest

from services.common.postgres import refusal_of
from services.wallets.amounts import format_amount
from services.wallets.assets import ASSETS
from services.wallets.errors import IdempotencyConflict


def hold_in_sql(dsn, user, asset, amount, ref):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT wallets.hold_funds(%s, %s, %s::numeric, %s)",
                            (user, asset, amount, ref)).fetchone()[0]


def refusal(dsn, *args) -> str:
    """The code of the coded refusal (SQLSTATE EX001, code in the HINT)."""
    with pytest.raises(psycopg.Error) as caught:
        hold_in_sql(dsn, *args)
    return refusal_of(caught.value)[0]


def balance(ledger, user, asset):
    return ledger.balance(user, ASSETS[asset])


def test_sql_holds_take_each_scale_from_the_registry(db):
    """move_funds reads registry.asset_scales(), the registry's declared
    function: no list of scales of its own (wallets 007 had one)."""
    rows = dict(db.execute("SELECT asset, scale FROM registry.asset_scales()").fetchall())
    assert {code: rows.get(code) for code in ASSETS} == {
        code: asset.scale for code, asset in ASSETS.items()}
    assert db.execute("SELECT to_regclass('wallets.asset_scales')").fetchone() == (None,)


def test_a_sql_hold_is_the_providers_hold(ledger, new_user, fund, wallets_schema, db):
    user = new_user()
    fund(user, "BTC", 100_000_000)
    ref = f"order:{uuid.uuid4()}"
    transaction_id = hold_in_sql(wallets_schema, user, "BTC", "0.25", ref)
    after = balance(ledger, user, "BTC")
    assert (after["available"], after["locked"]) == ("0.75000000", "0.25000000")
    # The provider recognises the same hold as a replay, and so does the function.
    replay = ledger.hold(user, ASSETS["BTC"], 25_000_000, ref)
    assert replay["transaction_id"] == transaction_id and replay["amount"] == "0.25000000"
    assert hold_in_sql(wallets_schema, user, "BTC", "0.250", ref) == transaction_id
    again = balance(ledger, user, "BTC")
    assert (again["available"], again["locked"]) == ("0.75000000", "0.25000000")
    # And the other way round: a provider hold replayed through the function.
    other = f"order:{uuid.uuid4()}"
    first = ledger.hold(user, ASSETS["BTC"], 10_000_000, other)
    assert hold_in_sql(wallets_schema, user, "BTC", "0.1", other) == first["transaction_id"]
    details = db.execute("SELECT details FROM wallets.transactions WHERE id = %s",
                         (transaction_id,)).fetchone()[0]
    assert details == {"user": user, "asset": "BTC", "amount": "0.25000000", "ref": ref}


def test_refusals_are_coded_and_write_nothing(ledger, new_user, fund, wallets_schema, db):
    user = new_user()
    fund(user, "USDT", 5_000_000)  # 5 USDT
    before = db.execute("SELECT count(*) FROM wallets.transactions").fetchone()[0]
    ref = f"order:{uuid.uuid4()}"
    assert refusal(wallets_schema, user, "USDT", "5.000001", ref) == "INSUFFICIENT_FUNDS"
    assert refusal(wallets_schema, user, "USDT", "0.0000001", ref) == "AMOUNT_TOO_PRECISE"
    for bad in ("0", "-1", "NaN"):
        assert refusal(wallets_schema, user, "USDT", bad, ref) == "INVALID_AMOUNT"
    assert refusal(wallets_schema, user, "DOGE", "1", ref) == "UNKNOWN_ASSET"
    assert refusal(wallets_schema, f"nobody-{uuid.uuid4()}", "USDT", "1", ref) == "UNKNOWN_USER"
    assert refusal(wallets_schema, user, "USDT", "1", "") == "INVALID_ID"
    assert db.execute("SELECT count(*) FROM wallets.transactions").fetchone()[0] == before
    hold_in_sql(wallets_schema, user, "USDT", "5", ref)
    assert refusal(wallets_schema, user, "USDT", "4", ref) == "IDEMPOTENCY_CONFLICT"
    with pytest.raises(IdempotencyConflict):
        ledger.hold(user, ASSETS["USDT"], 4_000_000, ref)
    after = balance(ledger, user, "USDT")
    assert (after["available"], after["locked"]) == ("0.000000", "5.000000")


def test_fifty_concurrent_sql_holds_on_funds_for_ten(ledger, new_user, fund, wallets_schema):
    user = new_user()
    fund(user, "ETH", 10 * 10 ** 15)  # exactly ten holds of 0.001 ETH

    def attempt(n):
        try:
            hold_in_sql(wallets_schema, user, "ETH", "0.001", f"order:{user}:{n}")
            return True
        except psycopg.Error as exc:
            assert refusal_of(exc)[0] == "INSUFFICIENT_FUNDS"
            return False
    results = list(eventlet.GreenPool(50).imap(attempt, range(50)))
    assert results.count(True) == 10
    after = balance(ledger, user, "ETH")
    assert after["available"] == "0.000000000000000000"
    assert after["locked"] == "0.010000000000000000"


def release_in_sql(dsn, user, asset, amount, ref):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT wallets.release_funds(%s, %s, %s::numeric, %s)",
                            (user, asset, amount, ref)).fetchone()[0]


def test_a_sql_release_is_the_providers_release(ledger, new_user, fund, wallets_schema):
    user = new_user()
    fund(user, "USDT", 10_000_000)
    hold_in_sql(wallets_schema, user, "USDT", "6", f"order:{user}")
    ref = f"order:{user}:final"
    with pytest.raises(psycopg.Error) as caught:
        release_in_sql(wallets_schema, user, "USDT", "6.000001", ref)
    assert refusal_of(caught.value)[0] == "INSUFFICIENT_LOCKED"
    transaction_id = release_in_sql(wallets_schema, user, "USDT", "2.5", ref)
    assert ledger.release(user, ASSETS["USDT"], 2_500_000, ref)["transaction_id"] == transaction_id
    assert release_in_sql(wallets_schema, user, "USDT", "2.5", ref) == transaction_id
    after = balance(ledger, user, "USDT")
    assert (after["available"], after["locked"]) == ("6.500000", "3.500000")


def test_sql_and_rpc_holds_write_every_amount_as_format_amount(ledger, new_user, fund, db):
    """One formatter of amounts (amounts.format_amount): move_funds writes
    round(amount, scale), which must read the same for every scale and for
    amounts of more digits than scale + 1 (lpad once truncated 1,000 USDT
    to "1.000000")."""
    for code, minor in (("BTC", 1), ("BTC", 10 ** 8 - 1), ("BTC", 123_456_789_012),
                        ("USDT", 1_000 * 10 ** 6 + 5), ("ETH", 10 ** 18), ("ETH", 7)):
        asset = ASSETS[code]
        user = new_user()
        fund(user, code, minor)
        held = ledger.hold(user, asset, minor, f"order:{uuid.uuid4()}")
        assert held["amount"] == format_amount(asset, minor), (code, minor)
        stored = db.execute("SELECT details->>'amount' FROM wallets.transactions WHERE id = %s",
                            (held["transaction_id"],)).fetchone()[0]
        assert stored == format_amount(asset, minor)
    assert db.execute("SELECT to_regprocedure('wallets.format_minor(numeric, int)')").fetchone() \
        == (None,)


def test_a_large_sql_hold_records_its_amount_and_refuses_with_the_right_figures(
        ledger, new_user, fund, wallets_schema, db):
    user = new_user()
    fund(user, "USDT", 1_500_000_000)  # 1,500 USDT
    ref = f"order:{uuid.uuid4()}"
    transaction_id = hold_in_sql(wallets_schema, user, "USDT", "1234.5", ref)
    details = db.execute("SELECT details FROM wallets.transactions WHERE id = %s",
                         (transaction_id,)).fetchone()[0]
    assert details["amount"] == "1234.500000"
    # The provider recognises it as the same hold.
    assert ledger.hold(user, ASSETS["USDT"], 1_234_500_000, ref)["transaction_id"] == transaction_id
    with pytest.raises(psycopg.Error) as caught:
        hold_in_sql(wallets_schema, user, "USDT", "10000", f"order:{uuid.uuid4()}")
    code, message = refusal_of(caught.value)
    assert code == "INSUFFICIENT_FUNDS"
    assert message.endswith(f"{user} has less than 10000.000000 USDT available")
