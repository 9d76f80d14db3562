"""Orders' relay sends the engine commands of one read to one engine queue
as one message (services.orders.acceptance.merge_engine_commands)."""
from __future__ import annotations

import json

from services.common.config import COMMANDS_EXCHANGE
from services.matching.wire import command_batch_message, commands_of
from services.orders import acceptance
from services.orders.acceptance import merge_engine_commands, several_commands

BTC, ETH = "matching.commands.BTC-USDT", "matching.commands.ETH-USDT"


def batch_row(row_id, market, *command_ids):
    message_id, payload = command_batch_message(
        market, [(command_id, {"type": "place", "n": command_id}) for command_id in command_ids])
    return (row_id, COMMANDS_EXCHANGE, f"matching.commands.{market}", message_id,
            json.dumps(payload))


def commands(message):
    return [command_id for command_id, _ in commands_of(message[3], json.loads(message[4]))]


def test_one_message_per_engine_queue_in_the_rows_order():
    event = (3, "wallets.events", "balances_changed", "e-3", "{}")
    cancel_all = (4, "", BTC, "cancel_all:u1:x", json.dumps({"command": {"type": "cancel_all"}}))
    rows = [batch_row(1, "BTC-USDT", "place:1", "place:2"), batch_row(2, "ETH-USDT", "place:3"),
            event, cancel_all, batch_row(5, "BTC-USDT", "cancel:1:y")]
    messages = merge_engine_commands(rows)
    # BTC's three rows as one message at the first one's place; ETH's one
    # row and the event as they were.
    assert [(m[0], m[2]) for m in messages] == [(1, BTC), (2, ETH), (3, "balances_changed")]
    assert commands(messages[0]) == ["place:1", "place:2", "cancel_all:u1:x", "cancel:1:y"]
    assert messages[0][1] == COMMANDS_EXCHANGE and messages[0][3] == "batch:place:1"
    assert json.loads(messages[0][4])["market"] == "BTC-USDT"
    assert messages[1] == rows[1] and messages[2] == event


def test_a_queue_with_a_malformed_row_keeps_its_rows():
    broken = (2, COMMANDS_EXCHANGE, BTC, "batch:x", json.dumps({"batch_version": 99,
                                                               "commands": []}))
    rows = [batch_row(1, "BTC-USDT", "place:1"), broken, batch_row(3, "ETH-USDT", "place:3"),
            batch_row(4, "ETH-USDT", "place:4")]
    messages = merge_engine_commands(rows)
    assert messages[:2] == rows[:2]
    assert [(m[0], commands(m)) for m in messages[2:]] == [(3, ["place:3", "place:4"])]


def test_a_merged_message_holds_at_most_the_engines_batch(monkeypatch):
    monkeypatch.setattr(acceptance, "MERGED_COMMANDS", 3)
    rows = [batch_row(n, "BTC-USDT", f"place:{n}a", f"place:{n}b") for n in (1, 2, 3)]
    messages = merge_engine_commands(rows)
    # Rows 1 and 2 reach the cap: merged (split at the cap) at row 1's place;
    # row 3 goes as it is, after them.
    assert [commands(m) for m in messages] == [["place:1a", "place:1b", "place:2a"],
                                               ["place:2b"], ["place:3a", "place:3b"]]
    assert [m[0] for m in messages] == [1, 1, 3] and messages[2] == rows[2]


def test_rows_after_the_cap_are_not_parsed(monkeypatch):
    # The work per read is bounded: a backlog's rows past MERGED_COMMANDS are
    # neither parsed nor written again (a row that would not parse shows it).
    monkeypatch.setattr(acceptance, "MERGED_COMMANDS", 4)
    unparsable = (3, COMMANDS_EXCHANGE, BTC, "batch:z", "{not json")
    rows = [batch_row(1, "BTC-USDT", "place:1a", "place:1b"),
            batch_row(2, "BTC-USDT", "place:2a", "place:2b"), unparsable,
            batch_row(4, "BTC-USDT", "place:4a")]
    messages = merge_engine_commands(rows)
    assert [m[0] for m in messages] == [1, 3, 4]
    assert commands(messages[0]) == ["place:1a", "place:1b", "place:2a", "place:2b"]
    assert messages[1:] == rows[2:]


def test_the_relay_lingers_after_a_read_of_more_than_one_command():
    """several_commands (orders' Relay.linger_after): a read of one command is
    a lone order, whose RESULT / FULL answer the linger would delay."""
    one = batch_row(1, "BTC-USDT", "place:1")
    assert not several_commands([one])
    assert several_commands([batch_row(1, "BTC-USDT", "place:1", "place:2")])
    assert several_commands([one, batch_row(2, "ETH-USDT", "place:3")])
    assert not several_commands([(4, "", BTC, "cancel_all:u1:x",
                                  json.dumps({"command": {"type": "cancel_all"}}))])
    assert several_commands([(5, "", BTC, "x", "not json")])
