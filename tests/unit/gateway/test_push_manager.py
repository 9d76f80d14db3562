"""The push cluster's message queue (gateway/sockets.py PushManager): emits
inside ``gathered()`` reach the other processes as one message, in order;
a receiving process handles each emit of a batch as if it had come alone."""
from __future__ import annotations

import pytest
from socketio.kombu_manager import KombuManager
from socketio.pubsub_manager import PubSubManager

from gateway.sockets import PushManager


def emit_message(event: str, room: str) -> dict:
    """The shape PubSubManager.emit publishes."""
    return {"method": "emit", "event": event, "data": [{"n": event}], "binary": False,
            "namespace": "/", "room": room, "skip_sid": None, "callback": None,
            "host_id": "another"}


@pytest.fixture
def manager(monkeypatch):
    published, handled = [], []
    monkeypatch.setattr(KombuManager, "_publish", lambda self, data: published.append(data))
    monkeypatch.setattr(PubSubManager, "_handle_emit",
                        lambda self, message: handled.append(message["event"]))
    made = PushManager("amqp://unused", channel="test", write_only=True)
    return made, published, handled


def test_emits_inside_the_block_are_one_message_in_order(manager):
    push, published, _handled = manager
    with push.gathered():
        for event in ("fill", "order", "fill"):
            push._publish(emit_message(event, "user:u-1"))
        assert published == []
    assert len(published) == 1
    assert [m["event"] for m in published[0]["batch"]] == ["fill", "order", "fill"]
    assert published[0]["host_id"] == push.host_id  # this process skips its own batch


def test_one_emit_goes_as_it_is_and_outside_a_block_each_goes_at_once(manager):
    push, published, _handled = manager
    with push.gathered():
        push._publish(emit_message("balances", "user:u-1"))
    push._publish(emit_message("order", "user:u-2"))
    assert [m["event"] for m in published] == ["balances", "order"]
    with push.gathered():
        pass
    assert len(published) == 2  # an empty block publishes nothing


def test_a_non_emit_inside_the_block_goes_after_what_was_gathered(manager):
    push, published, _handled = manager
    with push.gathered():
        push._publish(emit_message("account", "user:u-1"))
        push._publish({"method": "disconnect", "sid": "s-1", "namespace": "/",
                       "host_id": push.host_id})
        push._publish(emit_message("order", "user:u-1"))
    assert [m.get("event", m["method"]) for m in published] == ["account", "disconnect",
                                                                 "order"]


def test_a_received_batch_is_handled_emit_by_emit(manager):
    push, _published, handled = manager
    push._handle_emit({"method": "emit", "host_id": "another",
                       "batch": [emit_message(e, "user:u-1") for e in ("fill", "order")]})
    assert handled == ["fill", "order"]


def test_an_answer_to_a_connection_of_this_process_does_not_take_the_queue(monkeypatch):
    """A handler's emit to its own connection (welcome, depth_snapshot...)
    stays in the process, from the connect handler on; a user's room, which
    may have connections on other processes, takes the queue."""
    from types import SimpleNamespace

    routed = []
    monkeypatch.setattr(PubSubManager, "emit",
                        lambda self, event, data, namespace=None, room=None, skip_sid=None,
                        callback=None, **kwargs: routed.append(
                            (event, bool(kwargs.get("ignore_queue")))))
    push = PushManager("amqp://unused", channel="test", write_only=True)
    push.server = SimpleNamespace(eio=SimpleNamespace(generate_id=lambda: "sid-1"))
    sid = push.pre_connect("eio-1", "/")  # inside the connect handler
    push.emit("welcome", {}, to=sid)
    push.connect(sid, "/")
    push.emit("depth_snapshot", {}, to=sid)
    push.emit("order", {}, to="user:u-1")
    push.emit("depth", {}, to="depth:BTC-USDT", ignore_queue=True)
    assert routed == [("welcome", True), ("depth_snapshot", True), ("order", False),
                      ("depth", True)]
