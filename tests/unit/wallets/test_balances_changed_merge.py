"""The wallets relay sends the balances_changed rows of one outbox read as
one message (services.wallets.announcements.merge_balances_changed)."""
from __future__ import annotations

import json

from services.wallets import announcements
from services.wallets.announcements import merge_balances_changed


def announced(row_id, *changes, version=1):
    payload = {"event_version": version,
               "changes": [{"user": user, "asset": asset} for user, asset in changes]}
    return (row_id, "wallets.events", "balances_changed", f"balances:{row_id}",
            json.dumps(payload))


def changes(message):
    return [(c["user"], c["asset"]) for c in json.loads(message[4])["changes"]]


def test_a_run_of_announcements_is_one_message_with_each_change_once():
    rows = [announced(1, ("bob", "USDT"), ("alice", "BTC")),
            announced(2, ("alice", "BTC"), ("alice", "USDT")),
            announced(3, ("carol", "ETH"))]
    [message] = merge_balances_changed(rows)
    assert message[:4] == (1, "wallets.events", "balances_changed", "balances:1..balances:3")
    assert json.loads(message[4])["event_version"] == 1
    # Ordered by user then asset, as one statement's announcement is.
    assert changes(message) == [("alice", "BTC"), ("alice", "USDT"), ("bob", "USDT"),
                                ("carol", "ETH")]


def test_other_rows_keep_their_place_and_split_the_runs():
    other = (3, "wallets.events", "withdrawal_sent", "w-3", json.dumps({"event_version": 1}))
    malformed = (5, "wallets.events", "balances_changed", "balances:5", "not json")
    newer = announced(6, ("dave", "BTC"), version=2)
    rows = [announced(1, ("a", "BTC")), announced(2, ("b", "BTC")), other,
            announced(4, ("c", "BTC")), malformed, newer, announced(7, ("e", "BTC")),
            announced(8, ("f", "BTC"))]
    messages = merge_balances_changed(rows)
    assert [m[0] for m in messages] == [1, 3, 4, 5, 6, 7]
    assert changes(messages[0]) == [("a", "BTC"), ("b", "BTC")]
    # A lone announcement, an unknown version and a row that is not one go as they were.
    assert messages[1] == other and messages[2] == rows[3]
    assert messages[3] == malformed and messages[4] == newer
    assert messages[5][3] == "balances:7..balances:8"
    assert changes(messages[5]) == [("e", "BTC"), ("f", "BTC")]


def test_a_large_run_goes_as_messages_of_a_bounded_size(monkeypatch):
    monkeypatch.setattr(announcements, "MERGED_CHANGES", 2)
    rows = [announced(n, (f"u{n}", "BTC")) for n in range(1, 6)]
    messages = merge_balances_changed(rows)
    assert [m[3] for m in messages] == ["balances:1..balances:5", "balances:1..balances:5#1",
                                        "balances:1..balances:5#2"]
    assert [changes(m) for m in messages] == [
        [("u1", "BTC"), ("u2", "BTC")], [("u3", "BTC"), ("u4", "BTC")], [("u5", "BTC")]]
    assert {m[0] for m in messages} == {1}


def test_a_read_without_announcements_is_unchanged():
    assert merge_balances_changed([]) == []
    row = announced(9, ("a", "BTC"))
    assert merge_balances_changed([row]) == [row]
