"""The trade feed: ``trade_executed`` consumed with batches in flight.

``services.common.consumer.BatchConsumer`` handles one batch at a time: it
reads a batch, waits until ``handle`` made it durable, acks, and only then
reads on. For marketdata that left Python idle while Cassandra wrote and
Cassandra idle while Python read and decoded the next batch (end to end
~2,300 trades/s against ~5,400 for the pipeline alone, bench/README.md).

``PipelinedBatchConsumer`` keeps the same guarantees and overlaps the two:

* up to ``depth`` batches are handed over at once, each to ``handle`` in a
  greenthread of its own (``handle`` still returns only once its batch is
  durable; the ingest pipeline group-commits whatever is waiting);
* acks stay in delivery order, each one after its batch's ``handle``
  returned and after every earlier batch's: ``basic_ack(multiple=True)`` up
  to a batch never covers one that is not durable. Only this greenthread
  touches the channel;
* a ``handle`` that raises acks nothing more: the batches still in flight
  are let finish, then the connection is dropped, so the broker redelivers
  the failed batch and everything after it (``handle`` is idempotent).

And it reads cheaper (profiled: py-amqp cost ~80 us of Python per message,
as much as the Cassandra writes):

* the socket is read in 16 KB chunks (py-amqp asked for exactly one frame
  part per ``recv``: three system calls through eventlet per frame, nine
  per message); py-amqp's transport keeps what was read ahead in its buffer;
* complete ``basic.deliver`` messages in that buffer (method, header and one
  body frame, the usual shape) are parsed straight from the bytes
  (``take_deliveries``); any other frame -- a heartbeat, a channel close, a
  message split over several body frames, one cut by the end of the buffer
  -- goes through py-amqp as before, one frame at a time;
* bodies are decoded with the standard library's ``json.loads`` (kombu's
  decoder calls back into Python for every object).

The queue is the same quorum queue with single-active-consumer, declared and
bound the same way, so a pipelined consumer and a plain one are
interchangeable standbys of each other.
"""
from __future__ import annotations

import json
import logging
import socket
import struct
import time
from collections import deque
from typing import NamedTuple, Optional

import eventlet
from kombu import Connection

from services.common.consumer import BatchConsumer

log = logging.getLogger(__name__)

READ_CHUNK = 16384      # bytes per recv: ~25 messages; py-amqp copies its buffer's rest per read

_FRAME = struct.Struct(">BHI")           # type, channel, payload size
_CONTENT_HEADER = struct.Struct(">HHQH")  # class, weight, body size, property flags
_BASIC_DELIVER = b"\x00\x3c\x00\x3c"      # class 60 (basic), method 60 (deliver)
_FRAME_END = 0xCE


class Delivery(NamedTuple):
    delivery_tag: int
    routing_key: str
    message_id: Optional[str]
    content_type: Optional[str]
    body: bytes

    @classmethod
    def from_message(cls, message) -> "Delivery":
        """From py-amqp's Message (the slow path)."""
        return cls(message.delivery_tag, message.delivery_info["routing_key"],
                   message.properties.get("message_id"),
                   message.properties.get("content_type"), message.body)


def decode_body(delivery: Delivery):
    """A JSON body as Python objects; anything else (another content type,
    bytes that are not JSON) is passed on as its raw text, for ``handle`` to
    refuse like any malformed event."""
    body = delivery.body
    if delivery.content_type in (None, "application/json"):
        try:
            return json.loads(body)
        except ValueError:
            pass
    return body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else body


def read_ahead(transport, chunk: int = READ_CHUNK) -> None:
    """Make py-amqp's TCP transport read up to ``chunk`` bytes per ``recv``.
    Its ``_read(n)`` appends what ``_quick_recv`` returns to its buffer and
    keeps whatever exceeds ``n`` for the next read, so asking for more is
    safe; it only ever asked for exactly ``n``."""
    recv = transport.sock.recv
    transport._quick_recv = lambda n: recv(max(n, chunk))


def _shortstr(buf: bytes, p: int) -> tuple[str, int]:
    end = p + 1 + buf[p]
    return buf[p + 1:end].decode("utf-8", "surrogatepass"), end


def take_deliveries(transport, channel_id: int, consumer_tag: bytes, out: list,
                    limit: int) -> int:
    """Move the complete ``basic.deliver`` messages for ``consumer_tag`` at
    the front of the transport's read buffer into ``out`` as Deliveries,
    until ``out`` holds ``limit``;
    stop at the first frame that is anything else or is incomplete (py-amqp
    then handles it). Returns how many frames were taken.

    Layouts (AMQP 0-9-1): method frame args ``consumer-tag shortstr,
    delivery-tag longlong, redelivered bit, exchange shortstr, routing-key
    shortstr``; header frame ``class, weight, body-size, property-flags``
    then the properties present, in flag order: content-type,
    content-encoding, headers (a table: 4-byte length), delivery-mode,
    priority, correlation-id, reply-to, expiration, message-id, ...
    A type-1 frame can only arrive when py-amqp expects one on that channel,
    so taking whole messages never disturbs its per-channel state."""
    buf = transport._read_buffer
    end, pos, taken = len(buf), 0, 0
    frame, header, unpack_q = _FRAME.unpack_from, _CONTENT_HEADER.unpack_from, struct.unpack_from
    tag_len = len(consumer_tag)
    while end - pos >= 7 and len(out) < limit:
        kind, channel, size = frame(buf, pos)
        method = pos + 7
        method_end = method + size
        if (kind != 1 or channel != channel_id or method_end >= end
                or buf[method_end] != _FRAME_END or buf[method:method + 4] != _BASIC_DELIVER
                or buf[method + 4] != tag_len
                or buf[method + 5:method + 5 + tag_len] != consumer_tag):
            break
        p = method + 5 + tag_len
        (delivery_tag,) = unpack_q(">Q", buf, p)
        p += 9                                       # delivery tag, redelivered bit
        p += 1 + buf[p]                              # exchange
        routing_key, _ = _shortstr(buf, p)

        head = method_end + 1
        if end - head < 7:
            break
        kind, channel, size = frame(buf, head)
        props = head + 7
        head_end = props + size
        if kind != 2 or channel != channel_id or head_end >= end or buf[head_end] != _FRAME_END:
            break
        class_id, _weight, body_size, flags = header(buf, props)
        if class_id != 60 or flags & 1:              # continued flags: leave it to py-amqp
            break
        p = props + 14
        content_type = message_id = None
        if flags & 0x8000:
            content_type, p = _shortstr(buf, p)
        if flags & 0x4000:                           # content-encoding
            p += 1 + buf[p]
        if flags & 0x2000:                           # headers table
            p += 4 + int.from_bytes(buf[p:p + 4], "big")
        p += (flags & 0x1000 != 0) + (flags & 0x0800 != 0)   # delivery-mode, priority
        for bit in (0x0400, 0x0200, 0x0100):         # correlation-id, reply-to, expiration
            if flags & bit:
                p += 1 + buf[p]
        if flags & 0x0080:
            message_id, p = _shortstr(buf, p)

        after = head_end + 1
        if body_size == 0:
            body = b""
        else:
            if end - after < 7:
                break
            kind, channel, size = frame(buf, after)
            start = after + 7
            if (kind != 3 or channel != channel_id or size != body_size
                    or start + size >= end or buf[start + size] != _FRAME_END):
                break
            body = buf[start:start + size]
            after = start + size + 1
        out.append(Delivery(delivery_tag, routing_key, message_id, content_type, body))
        taken += 3 if body_size else 2
        pos = after
    if pos:
        transport._read_buffer = buf[pos:]
    return taken


def drain_buffered(connection, channel_id: int, consumer_tag: bytes, out: list,
                   limit: int) -> None:
    """Dispatch the complete frames already read ahead, until ``out`` holds
    ``limit`` deliveries, without touching the socket
    (``Connection.drain_events`` sets and resets the socket's timeout around
    every single frame): whole deliveries directly, anything else through
    py-amqp."""
    transport = connection.transport
    read_frame, on_frame = transport.read_frame, connection.on_inbound_frame
    while len(out) < limit:
        connection.bytes_recv += take_deliveries(transport, channel_id, consumer_tag, out, limit)
        if len(out) >= limit:
            return
        buf = transport._read_buffer
        # a frame: type (1), channel (2), size (4), payload (size), end (1)
        if len(buf) < 7 or len(buf) < 8 + int.from_bytes(buf[3:7], "big"):
            return
        on_frame(read_frame())


class _InFlight:
    __slots__ = ("thread", "last_tag", "size")

    def __init__(self, thread, last_tag: int, size: int):
        self.thread = thread
        self.last_tag = last_tag
        self.size = size


class PipelinedBatchConsumer(BatchConsumer):
    """A ``BatchConsumer`` with up to ``depth`` batches being handled at once
    (module docstring); prefetch is ``batch * (depth + 1)`` so the broker
    keeps sending while batches are written."""

    def __init__(self, amqp_uri, queue, exchange, routing_keys, handle, batch=1000,
                 idle=None, idle_every=0.5, depth=3, poll=0.005, on_lost=None):
        super().__init__(amqp_uri, queue, exchange, routing_keys, handle, batch, idle, idle_every)
        self.on_lost = on_lost      # called when a connection ended, the batches settled
        self.depth = depth
        self.poll = poll            # drain timeout while batches are in flight (ack latency)
        self.in_flight = 0          # batches handed over, not yet acked (for tests and health)

    def _lost(self) -> None:
        """Another instance may be the active consumer from now on (a standby
        takes the queue over), until this one is again."""
        super()._lost()
        if self.on_lost is not None and self.running:
            self.on_lost()

    def _consume(self) -> None:
        buffer: list[Delivery] = []
        flights: deque[_InFlight] = deque()
        with Connection(self.amqp_uri, heartbeat=10) as amqp:
            channel = amqp.channel()
            channel.basic_qos(0, min(65535, self.batch * (self.depth + 1)), False)
            self._declare(channel)
            connection = amqp.connection
            read_ahead(connection.transport)
            tag = channel.basic_consume(self.queue_name,
                                        callback=lambda m: buffer.append(Delivery.from_message(m)))
            drain = (connection, channel.channel_id, tag.encode(), buffer, self.batch)
            beat = time.monotonic()
            try:
                while self.running:
                    if time.monotonic() - beat >= 1.0:
                        amqp.heartbeat_check()      # py-amqp sends heartbeats only when asked
                        beat = time.monotonic()
                    self._ack_finished(channel, flights)
                    if len(flights) >= self.depth:
                        flights[0].thread.wait()        # raises if that batch failed
                        continue
                    try:
                        amqp.drain_events(timeout=self.poll if flights else self.idle_every)
                    except socket.timeout:
                        if not flights and self.idle is not None:
                            self.idle()
                        continue
                    drain_buffered(*drain)
                    while len(buffer) < self.batch:
                        try:
                            amqp.drain_events(timeout=0)
                        except socket.timeout:
                            break
                        drain_buffered(*drain)
                    if not buffer:
                        continue
                    self.active = True
                    batch, buffer[:] = buffer[:], []
                    items = [(d.routing_key, d.message_id, decode_body(d)) for d in batch]
                    flights.append(_InFlight(eventlet.spawn(self.handle, items),
                                             batch[-1].delivery_tag, len(batch)))
                    self.in_flight = len(flights)
            finally:
                self._settle(flights)

    def _ack_finished(self, channel, flights: deque) -> None:
        """Ack, in order, every leading batch whose ``handle`` returned; a
        failed one raises (and stops the acks there)."""
        last, count = None, 0
        try:
            while flights and flights[0].thread.dead:
                flights[0].thread.wait()
                flight = flights.popleft()
                last, count = flight.last_tag, count + flight.size
        finally:
            if last is not None:
                channel.basic_ack(last, multiple=True)
                self.handled += count
            self.in_flight = len(flights)

    def _settle(self, flights: deque) -> None:
        """Leaving the connection (failure or stop): nothing more is acked.
        Batches still in flight are let finish (their writes are idempotent
        and their messages come back) so no two handlers of one message
        overlap; on stop they are killed instead."""
        for flight in flights:
            if not self.running:
                flight.thread.kill()
                continue
            try:
                flight.thread.wait()
            except Exception:       # noqa: BLE001 -- the first failure is being raised already
                pass
        flights.clear()
        self.in_flight = 0
