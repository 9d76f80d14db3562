"""The engine's wire formats (services/matching/wire.py): command batch
messages in, per-batch event messages out."""
import json

import pytest

from services.matching.models import CancelOrder, Halt, command_to_dict
from services.matching.wire import (
    COMMAND_BATCH_VERSION, MalformedCommandMessage, command_batch_message, commands_of,
)


def test_a_command_batch_is_one_message_read_back_in_order():
    commands = [("place:7", {"type": "place_order", "order_id": 7}),
                ("cancel:5:x", command_to_dict(CancelOrder(5, "u-1"))),
                ("halt:BTC-USDT:y", command_to_dict(Halt()))]
    message_id, payload = command_batch_message("BTC-USDT", commands)
    assert message_id == "batch:place:7"
    assert payload["batch_version"] == COMMAND_BATCH_VERSION and payload["market"] == "BTC-USDT"
    # As it travels (JSON) and comes back.
    assert commands_of(message_id, json.loads(json.dumps(payload))) == commands


def test_the_older_one_command_message_is_still_read():
    assert commands_of("place:9", {"command": {"type": "halt"}}) == [("place:9", {"type": "halt"})]


@pytest.mark.parametrize("message_id, body", [
    ("m", "not an object"),
    ("m", {"something": "else"}),
    (None, {"command": {"type": "halt"}}),          # a single command's id is its message id
    ("m", {"commands": [], "batch_version": COMMAND_BATCH_VERSION + 1}),
    ("m", {"commands": []}),                          # no version
    ("m", {"commands": {"id": "a"}, "batch_version": 1}),
])
def test_a_message_of_neither_shape_is_refused(message_id, body):
    with pytest.raises(MalformedCommandMessage):
        commands_of(message_id, body)


def test_an_entry_without_id_is_left_out_and_reported_the_others_count():
    errors = []
    body = {"batch_version": 1, "market": "BTC-USDT",
            "commands": [{"id": "a", "command": {"type": "halt"}}, {"command": {"type": "resume"}},
                         "junk", {"id": "b", "command": {"type": "resume"}}]}
    assert commands_of("batch:a", body, errors) == [("a", {"type": "halt"}),
                                                    ("b", {"type": "resume"})]
    assert len(errors) == 2


def test_an_empty_batch_cannot_be_built():
    with pytest.raises(ValueError):
        command_batch_message("BTC-USDT", [])
