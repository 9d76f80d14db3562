"""Socket.IO live push (namespace ``/``), on eventlet.

Every gateway process runs Flask-SocketIO with its kombu message queue on our
RabbitMQ (``EXCHANGE_PUSH_CHANNEL`` names the fanout exchange; one channel per
cluster of gateways): whatever the active private bridge (gateway/bridge.py)
emits to a room reaches that room's connections on every process. The
market streams (book diffs, trades) reach every process from its own queue
of the engine's batches and are written to its own connections.

Protocol (client -> server; every reply to a bad request is an ``error``
event ``{code, message, request}``, never a dropped connection):

* connect with ``auth={"token": <Keycloak access token>}`` for the private
  stream (``user:<subject>`` room: ``order``, ``fill``, ``balances``,
  ``account``); without a token only public streams. A forged, expired or
  closed/frozen user's token refuses the connection (``connect_error`` with
  ``{code, message}``). Before the token expires, send ``authenticate``
  ``{token}`` with the refreshed one (same subject); a connection whose token
  expired is told (``error`` TOKEN_EXPIRED) and closed. A frozen or closed
  user is disconnected at once (``account`` ``{state}`` first). ``order``
  and ``fill`` come from the engine's events as they happen; orders records
  the same events in its own consumer, so a REST read made on their arrival
  (GET /api/v1/orders) can still show the state before them for a moment:
  an ``order`` with ``event`` ``order_done`` is newer than such a read (the
  web client leaves that order out of its open list and reads again).
* ``subscribe`` / ``unsubscribe`` ``{channel, market?, interval?}`` with
  channel ``depth`` | ``trades`` | ``ticker`` | ``candles`` (needs
  ``interval``) | ``tickers`` (all markets); acknowledged with ``{ok: true}``.
  ``depth`` is answered with ``depth_snapshot`` ``{market, seq, buy, sell}``
  (the engine's book at ``seq``), then ``depth`` diffs ``{market, first_seq,
  last_seq, changes: [{side, price, quantity}]}`` (quantity is the level's new
  total, "0" removes it; apply the changes in order). ``trades`` come as
  ``{market, trades: [...]}``; both go out as soon as they arrive, a busy
  market's coalesced (one frame per market and stream per 25 ms on average,
  up to 3 back to back after a quiet spell);
  both carry ``trace`` (ms stamps of each hop, for the bench). Apply a diff when ``first_seq <= held + 1 <=
  last_seq``; skip it when ``last_seq <= held``; otherwise there is a gap:
  send ``depth_snapshot`` ``{market}`` for a new snapshot.
* What is not this protocol's gets an ``error`` and the connection goes on:
  an event of another name (UNKNOWN_EVENT), a client's event named
  ``connect`` or ``disconnect`` (RESERVED_EVENT: Socket.IO's own, which
  python-socketio would hand to the connect and disconnect handlers), an
  event with more than one argument (BAD_REQUEST), and a packet that is no
  event of ours (BAD_PACKET: not JSON, no event name or one that is not a
  string, nested too deeply, an unknown packet type, a binary event: this
  protocol has none, and its attachments would be kept until they all came).
* Limits: at most ``MAX_SUBSCRIPTIONS`` per connection; a message larger than
  ``MAX_MESSAGE_BYTES`` is refused; at most ``MAX_QUEUED`` frames
  (``EXCHANGE_PUSH_MAX_QUEUED``) may wait to be written to one connection:
  beyond that its unsent frames are discarded and it is dropped (``error``
  SLOW_CONSUMER, then the close, are its last frames; its TCP connection is
  cut if it has not read them within ``SLOW_CLOSE_GRACE_S``), so one slow
  reader never holds memory or delays the others.
  ``EXCHANGE_PUSH_SEND_BUFFER_BYTES`` fixes each connection's kernel send
  buffer (unset: the kernel's autotuning).

Frames go out through gateway/push_fanout.py: a room's frame is encoded once
and written straight to every connection with nothing waiting.
"""
from __future__ import annotations

import io
import json
import logging
import time
import urllib.parse
from contextlib import contextmanager

import eventlet
import eventlet.event
import eventlet.semaphore
from flask import request
from flask_socketio import ConnectionRefusedError, emit, join_room, leave_room
from engineio import packet as engineio_packet
from engineio import payload as engineio_payload
from socketio import packet as socketio_packet
from socketio.kombu_manager import KombuManager

from gateway import bridge as push_bridge
from gateway import ratelimit
from gateway.auth import trusted_proxies
from gateway.connection_limits import ConnectionLimits, guard_attempts
from gateway.push_fanout import Fanout
from gateway.slow_clients import BodyTimeout
from services.common import metrics
from services.common.config import Settings
from services.common.errors import code_of
from services.common.tokens import InvalidToken, TokenVerifier

log = logging.getLogger("gateway.sockets")

MAX_SUBSCRIPTIONS = 20
MAX_MESSAGE_BYTES = 2048
MAX_QUEUED = 1000
# Seconds a dropped slow connection has to read its last frames.
SLOW_CLOSE_GRACE_S = 10.0
# Transport-level cap (Engine.IO closes a connection sending more in one frame).
MAX_FRAME_BYTES = 64 * 1024
CHANNELS = ("depth", "trades", "ticker", "candles", "tickers")
SNAPSHOT_LEVELS = 1000
MARKETS_TTL_S = 30.0
EXPIRY_CHECK_S = 1.0
# The in-flight key of the markets' read (snapshots' keys are market symbols).
MARKETS_READ = ("markets",)  # never a market symbol


class PushManager(KombuManager):
    """The kombu client manager, plus one message of our own: the bridge's
    ``__disconnect_user__`` to a user's room closes that user's connections
    on every process (it is handled here, never sent to a client); and
    ``gathered()``: the emits inside the block reach the other processes as
    one message-queue message at its end (``{"method": "emit", "batch":
    [...]}``), not one each: every process consumes every message, and the
    private bridge's events come several per engine batch (each fill, each
    order update) and a dozen per flush. A process of an older version
    ignores a batch (logged): during a rolling upgrade its users miss those
    events until they re-read."""

    def __init__(self, *args, on_disconnect_user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_disconnect_user = on_disconnect_user
        self._gathering: list | None = None
        self._publishing = eventlet.semaphore.Semaphore()

    @contextmanager
    def gathered(self):
        """Emits inside the block are published together at its end (a nested
        block joins the outer one). Each is handled in this process at once,
        as without the block. Used only around code that does not wait (no
        green thread switch inside), so no other green thread's emits join."""
        if self._gathering is not None:
            yield
            return
        self._gathering = []
        try:
            yield
        finally:
            messages, self._gathering = self._gathering, None
            if len(messages) == 1:
                self._send(messages[0])
            elif messages:
                self._send({"method": "emit", "batch": messages, "host_id": self.host_id})

    def emit(self, event, data, namespace=None, room=None, skip_sid=None, callback=None,
             to=None, **kwargs):
        room = to or room
        if (not kwargs.get("ignore_queue") and isinstance(room, str)
                and self.eio_sid_from_sid(room, namespace or "/") is not None):
            # A connection of this process (a handler's answer: welcome,
            # depth_snapshot, error): no other process has it. Through the
            # queue every process would get it (a book snapshot each, per
            # subscribe) and only this one has anyone to give it to.
            kwargs["ignore_queue"] = True
        return super().emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid,
                            callback=callback, **kwargs)

    def _publish(self, data):
        if self._gathering is not None:
            if data.get("method") == "emit":
                self._gathering.append(data)
                return
            # Anything else (a disconnect...) goes after what was gathered.
            messages, self._gathering = self._gathering, []
            for message in messages:
                self._send(message)
        self._send(data)

    def _send(self, data):
        # One publisher connection for the process: green threads (the
        # bridge's consumer and its flush, handlers) take turns on it, or
        # their frames could interleave on the socket.
        with self._publishing:
            super()._publish(data)

    def _producer_publish(self, connection):
        # The stock manager makes a Producer per message, and each one
        # declares the exchange again: a broker round trip per push, which
        # capped the bridge at a few hundred pushes a second. One producer
        # per connection declares once (``ensure`` revives it after a
        # reconnection).
        producer = getattr(self, "_producer", None)
        if producer is None or producer.connection is not connection:
            producer = self._producer = connection.Producer(exchange=self._exchange(),
                                                            **self.producer_options)
        return connection.ensure(producer, producer.publish)

    def _handle_emit(self, message):
        if "batch" in message:
            for each in message["batch"]:
                self._handle_emit(each)
            return
        data = message["data"]
        data = data[0] if isinstance(data, list) and len(data) == 1 else data
        if message.get("event") == push_bridge.DISCONNECT_USER:
            self.on_disconnect_user(data)
            return
        if isinstance(data, dict) and isinstance(data.get("trace"), dict):
            # When this process got the frame: the bench's trace of the hops.
            data["trace"] = {**data["trace"], "received": push_bridge.now_ms()}
        super()._handle_emit(message)


class Refused(Exception):
    """A request refused: the client gets an ``error`` event and the ack."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def answering(handler):
    """Handlers raise Refused; the client gets ``error`` {code, message,
    request} and the acknowledgement {ok: false, code, message}."""
    name = handler.__name__.removeprefix("on_")

    def answer(self, data=None, *more):
        try:
            if more:  # python-socketio hands each argument of the event
                raise Refused("BAD_REQUEST", "send one object")
            return handler(self, data)
        except Refused as refused:
            emit("error", {"code": refused.code, "message": refused.message, "request": name})
            return {"ok": False, "code": refused.code, "message": refused.message}
    answer.__name__ = handler.__name__
    return answer


class BadPacket(ValueError):
    """A client's packet that is no event of this protocol."""


class PushPacket(socketio_packet.Packet):
    """Socket.IO's packet, decoding only what a client of this protocol
    sends; anything else raises ``BadPacket`` as it is decoded, before
    python-socketio acts on it (``Push.guard_incoming`` answers it):

    * a binary event or acknowledgement: the server would keep the frames
      that follow as its attachments, as many as it declares (up to 10^10),
      text frames included, until the connection ends;
    * an event that is not ``[name, ...]`` with a string name: ``[]`` or an
      object failed in python-socketio's dispatch, and a name that is a
      list or an object in its handler lookup (TypeError, no answer);
    * JSON nested past the interpreter's recursion limit (RecursionError)."""

    def decode(self, encoded_packet):
        if not isinstance(encoded_packet, str):
            raise BadPacket("a binary frame: this protocol has none")
        try:
            attachments = super().decode(encoded_packet)
        except RecursionError:
            raise BadPacket("JSON nested too deeply") from None
        except ValueError as exc:
            raise BadPacket(f"not a packet of this protocol: {str(exc)[:80]}") from None
        if self.packet_type in (socketio_packet.BINARY_EVENT, socketio_packet.BINARY_ACK):
            raise BadPacket("a binary event: this protocol has none")
        if self.packet_type == socketio_packet.EVENT and not (
                isinstance(self.data, list) and self.data and isinstance(self.data[0], str)):
            raise BadPacket("an event is [name, data] with a string name")
        return attachments


class Connection:
    __slots__ = ("sid", "user_id", "expires_at", "rooms")

    def __init__(self, sid: str, user_id: str | None, expires_at: int | None):
        self.sid = sid
        self.user_id = user_id
        self.expires_at = expires_at
        self.rooms: set[str] = set()


class Push:
    """This process's connections and their subscriptions."""

    def __init__(self, socketio, settings: Settings, rpc):
        self.socketio = socketio
        self.settings = settings
        self.rpc = rpc
        self.verifier = TokenVerifier.from_settings(settings)
        self.connections: dict[str, Connection] = {}
        self.markets: set[str] = set()
        self.markets_read_at = float("-inf")
        self.dropped_slow = 0
        self.max_queued = int(settings.get("EXCHANGE_PUSH_MAX_QUEUED") or MAX_QUEUED)
        send_buffer = settings.get("EXCHANGE_PUSH_SEND_BUFFER_BYTES")
        self.fanout = Fanout(send_buffer=int(send_buffer) if send_buffer else None)
        self.in_flight: dict[str | tuple, eventlet.event.Event] = {}
        metrics.SOCKET_CONNECTIONS.set_function(lambda: len(self.connections))

    # -- catalogue -------------------------------------------------------------
    def known_markets(self) -> set[str]:
        """The listed markets, re-read at most every MARKETS_TTL_S; requests
        arriving while a read is in flight share it (a burst of connections
        subscribing would otherwise be a burst of the same RPC, each holding
        a proxy of the pool)."""
        if time.monotonic() - self.markets_read_at > MARKETS_TTL_S or not self.markets:
            flight = self.in_flight.get(MARKETS_READ)
            if flight is None:
                flight = self.in_flight[MARKETS_READ] = eventlet.event.Event()
                try:
                    with self.rpc() as services:
                        markets = {m["symbol"] for m in services.matching.list_markets()}
                    self.markets, self.markets_read_at = markets, time.monotonic()
                    flight.send(markets)
                except Exception as exc:
                    flight.send_exception(exc)
                finally:
                    self.in_flight.pop(MARKETS_READ, None)
            try:
                return flight.wait()
            except Exception:
                if self.markets:
                    return self.markets  # a stale list beats refusing everyone
                log.warning("the market list could not be read", exc_info=True)
                raise Refused("UNAVAILABLE", "the market list could not be read: try again")
        return self.markets

    def warm_up(self, attempts: int = 30) -> None:
        """Reads the market list once at start (retried each second, at most
        ``attempts`` times): the first burst of subscriptions then finds it
        read and an RPC proxy made, instead of all waiting on one first read."""
        for _ in range(attempts):
            try:
                self.known_markets()
                return
            except Exception:
                eventlet.sleep(1.0)

    # -- identity ----------------------------------------------------------------
    def identify(self, token) -> tuple[str, int]:
        """The token's subject and expiry; raises InvalidToken."""
        if not isinstance(token, str) or not token or len(token) > 8192:
            raise InvalidToken("TOKEN_MALFORMED", "the token must be a string")
        principal = self.verifier.verify(token)
        with self.rpc() as services:
            who = services.users.authenticate(token)
        if who.get("state") in ("frozen", "closed"):
            raise InvalidToken("USER_" + who["state"].upper(), f"the account is {who['state']}")
        return principal.subject, int(principal.claims["exp"])

    def disconnect_user(self, data: dict) -> None:
        user = data.get("user_id")
        for conn in [c for c in self.connections.values() if c.user_id == user]:
            self.socketio.emit("account", {"state": data.get("state")}, to=conn.sid,
                               ignore_queue=True)
            self.socketio.server.disconnect(conn.sid)

    def expiry_loop(self) -> None:
        while True:
            eventlet.sleep(EXPIRY_CHECK_S)
            now = int(time.time())
            for conn in [c for c in self.connections.values()
                         if c.expires_at is not None and c.expires_at <= now]:
                self.socketio.emit("error", {"code": "TOKEN_EXPIRED",
                                             "message": "the access token expired: reconnect "
                                                        "with a fresh one"},
                                   to=conn.sid, ignore_queue=True)
                self.socketio.server.disconnect(conn.sid)

    # -- what clients send ------------------------------------------------------------
    def guard_incoming(self) -> None:
        """Every client message goes through python-socketio's Engine.IO
        ``message`` handler, wrapped: a packet that is no event of this
        protocol (``PushPacket`` refuses it as it is decoded, or the library
        fails on it) is answered with ``error`` BAD_PACKET and logged in one
        line, where it left a traceback and no answer. Event handlers run in
        green threads of their own, outside this: their refusals are theirs."""
        eio = self.socketio.server.eio
        handle = eio.handlers["message"]
        manager = self.socketio.server.manager

        def guarded(eio_sid, data):
            try:
                return handle(eio_sid, data)
            except (ValueError, TypeError, LookupError) as exc:
                sid = manager.sid_from_eio_sid(eio_sid, "/")
                log.warning("bad packet from %s: %s", sid or eio_sid, str(exc)[:120])
                if sid is not None:
                    message = str(exc) if isinstance(exc, BadPacket) else \
                        "not a packet of this protocol"
                    self.socketio.emit("error", {"code": "BAD_PACKET", "message": message,
                                                 "request": None},
                                       to=sid, ignore_queue=True)

        eio.on("message", guarded)

    # -- sending and slow consumers ------------------------------------------------
    def bound_send_queues(self) -> None:
        """Every frame to a connection goes through here (Engine.IO's one
        send path, wrapped). A connection on a websocket with nothing
        waiting gets the room's frame written at once, encoded once for the
        whole room (gateway/push_fanout.py); otherwise the frame waits in
        Engine.IO's queue, which has no bound of its own: a connection with
        ``max_queued`` frames waiting is dropped instead (its reader does not
        read)."""
        eio = self.socketio.server.eio
        send_packet = eio.send_packet
        self.fanout.install(eio)

        def bounded_send_packet(eio_sid, pkt):
            socket = eio.sockets.get(eio_sid)
            if socket is not None and self.fanout.try_send(socket, pkt):
                return
            if socket is not None and socket.queue.qsize() >= self.max_queued:
                if not socket.closing:
                    self.drop_slow(eio, socket)
                return
            send_packet(eio_sid, pkt)

        eio.send_packet = bounded_send_packet

    def drop_slow(self, eio, socket) -> None:
        """The frames not yet written are discarded; the client's last frames
        are ``error`` SLOW_CONSUMER and the close, written after what its
        socket already holds. A client that does not read them within
        ``SLOW_CLOSE_GRACE_S`` has its TCP connection cut."""
        self.dropped_slow += 1
        metrics.SOCKET_DROPPED.inc()
        log.warning("dropping slow connection %s: %d frames unsent", socket.sid,
                    socket.queue.qsize())
        socket.queue.queue.clear()
        reason = self.socketio.server.packet_class(
            socketio_packet.EVENT, namespace="/",
            data=["error", {"code": "SLOW_CONSUMER",
                            "message": f"more than {self.max_queued} messages waited to be "
                                       "sent to this connection: it was closed"}])
        socket.send(engineio_packet.Packet(engineio_packet.MESSAGE, reason.encode()))
        socket.close(wait=False, reason="slow consumer")
        eio.sockets.pop(socket.sid, None)
        eventlet.spawn_after(SLOW_CLOSE_GRACE_S, self.fanout.cut, socket.sid)

    # -- handlers --------------------------------------------------------------------
    def reserved(self, event: str) -> dict:
        """A client's event named ``connect`` or ``disconnect``: python-socketio
        hands it to the connect or disconnect handler like the real ones
        (``disconnect`` made this process forget an open connection, which
        its token's expiry and a freeze then never closed; ``connect`` gave it
        a fresh record, without its user and its subscriptions)."""
        refusal = {"code": "RESERVED_EVENT",
                   "message": f"{event} is Socket.IO's own event: a client cannot send it"}
        emit("error", {**refusal, "request": event})
        return {"ok": False, **refusal}

    def on_connect(self, auth):
        # A real connect runs while the client is still connecting.
        if not self.socketio.server.manager.is_pre_connected(request.sid, request.namespace):
            return self.reserved("connect")
        token = auth.get("token") if isinstance(auth, dict) else None
        user, expires = None, None
        if token is not None:
            try:
                user, expires = self.identify(token)
            except InvalidToken as exc:
                # The client's connect_error carries {message, data: {code, message}}.
                raise ConnectionRefusedError(str(exc), {"code": exc.code, "message": str(exc)})
            except Exception as exc:  # the users service refused (closed, unknown...)
                code = code_of(exc) or "UNAUTHORIZED"
                raise ConnectionRefusedError("the token was refused",
                                             {"code": code, "message": "the token was refused"})
        conn = Connection(request.sid, user, expires)
        self.connections[request.sid] = conn
        if user is not None:
            join_room(f"user:{user}")
        emit("welcome", {"user_id": user, "expires_at": expires,
                         "max_subscriptions": MAX_SUBSCRIPTIONS})

    def on_disconnect(self, *_reason):
        # A real disconnect runs once the client is no longer connected.
        if self.socketio.server.manager.is_connected(request.sid, request.namespace):
            return self.reserved("disconnect")
        self.connections.pop(request.sid, None)

    def connection(self) -> Connection:
        """The caller's record; each event is handled in a green thread of its
        own, which may run after its connection's disconnect."""
        conn = self.connections.get(request.sid)
        if conn is None:
            raise Refused("NOT_CONNECTED", "this connection is closed")
        return conn

    @answering
    def on_authenticate(self, data):
        conn = self.connection()
        self._sane(data)
        try:
            user, expires = self.identify(data.get("token"))
        except InvalidToken as exc:
            raise Refused(exc.code, "the token was refused")
        except Exception as exc:  # the users service refused (closed, unknown...)
            raise Refused(code_of(exc) or "UNAUTHORIZED", "the token was refused")
        if conn.user_id is not None and user != conn.user_id:
            raise Refused("TOKEN_SUBJECT", "a connection cannot change user")
        if conn.user_id is None:
            join_room(f"user:{user}")
        conn.user_id, conn.expires_at = user, expires
        return {"ok": True, "expires_at": expires}

    @answering
    def on_subscribe(self, data):
        room = self._room(data)
        conn = self.connection()
        if room not in conn.rooms and len(conn.rooms) >= MAX_SUBSCRIPTIONS:
            raise Refused("TOO_MANY_SUBSCRIPTIONS",
                          f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")
        conn.rooms.add(room)
        join_room(room)
        if data["channel"] == "depth":
            # Joined first: diffs after the snapshot's seq are already coming.
            self.send_snapshot(data["market"])
        return {"ok": True, "room": room}

    @answering
    def on_unsubscribe(self, data):
        room = self._room(data)
        self.connection().rooms.discard(room)
        leave_room(room)
        return {"ok": True}

    @answering
    def on_depth_snapshot(self, data):
        self._sane(data)
        market = data.get("market")
        if not isinstance(market, str) or market not in self.known_markets():
            raise Refused("UNKNOWN_MARKET", f"no market {str(market)[:40]!r}")
        if f"depth:{market}" not in self.connection().rooms:
            raise Refused("NOT_SUBSCRIBED", "subscribe to depth first")
        self.send_snapshot(market)
        return {"ok": True}

    def on_other(self, event, *args):
        emit("error", {"code": "UNKNOWN_EVENT", "message": f"no event {str(event)[:40]!r}",
                       "request": str(event)[:40]})

    def snapshot(self, market: str) -> dict:
        """The engine's book, one read per market at a time: requests arriving
        while a read is in flight share its answer. A subscriber that joined
        its room after the read began may miss a diff the answer does not
        cover: that shows as a gap, and it asks again."""
        flight = self.in_flight.get(market)
        if flight is None:
            flight = self.in_flight[market] = eventlet.event.Event()
            try:
                with self.rpc() as services:
                    flight.send(services.matching.get_depth(market, SNAPSHOT_LEVELS))
            except Exception as exc:
                flight.send_exception(exc)
            finally:
                self.in_flight.pop(market, None)
        return flight.wait()

    def send_snapshot(self, market: str) -> None:
        book = self.snapshot(market)
        emit("depth_snapshot", {"market": market, "seq": book["seq"], "buy": book["buy"],
                                "sell": book["sell"]})

    # -- validation --------------------------------------------------------------------
    def _sane(self, data) -> None:
        if not isinstance(data, dict):
            raise Refused("BAD_REQUEST", "the message must be an object")
        try:
            size = len(json.dumps(data))
        except (TypeError, ValueError, RecursionError):
            size = MAX_MESSAGE_BYTES + 1
        if size > MAX_MESSAGE_BYTES:
            raise Refused("MESSAGE_TOO_LARGE", f"messages are at most {MAX_MESSAGE_BYTES} bytes")

    def _room(self, data) -> str:
        self._sane(data)
        channel, market, interval = data.get("channel"), data.get("market"), data.get("interval")
        if channel not in CHANNELS:
            raise Refused("UNKNOWN_CHANNEL", f"channel must be one of {', '.join(CHANNELS)}")
        if channel == "tickers":
            return "tickers"
        if not isinstance(market, str) or market not in self.known_markets():
            raise Refused("UNKNOWN_MARKET", f"no market {str(market)[:40]!r}")
        if channel == "candles":
            if interval not in push_bridge.INTERVALS:
                raise Refused("UNKNOWN_INTERVAL",
                              f"interval must be one of {', '.join(push_bridge.INTERVALS)}")
            return f"candles:{market}:{interval}"
        return f"{channel}:{market}"


# What a client may post in a long-polling payload (Engine.IO 4): close,
# pong, message, upgrade. A ping, a noop or an unknown type made Engine.IO
# close the session waiting for the client to read the close (the same hang
# as an oversized body); an empty or unparsable packet left a traceback and
# an "ok". Binary messages are not part of this protocol.
CLIENT_POLL_PACKETS = frozenset(str(kind) for kind in (
    engineio_packet.CLOSE, engineio_packet.PONG, engineio_packet.MESSAGE,
    engineio_packet.UPGRADE))


def poll_payload_refusal(body: bytes) -> str | None:
    """Why Engine.IO must not be handed this long-polling POST body, or None.
    Only the packets' framing and types are read here (Engine.IO parses
    them; the messages' contents are ``guard_incoming``'s)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "a payload is UTF-8 text"
    if text.startswith("d="):   # JSONP, as Engine.IO reads it
        text = urllib.parse.parse_qs(text).get("d", [""])[0]
    if not text:
        return None
    packets = text.split("\x1e")
    if len(packets) > engineio_payload.Payload.max_decode_packets:
        return f"at most {engineio_payload.Payload.max_decode_packets} packets per payload"
    for encoded in packets:
        if not encoded:
            return "an empty packet"
        if encoded[0] not in CLIENT_POLL_PACKETS:
            return f"a client does not send packets of type {encoded[0]!r}"
    return None


def guard_polls(wsgi_app, path: str = "/socket.io"):
    """WSGI in front of Socket.IO, for long-polling POSTs:

    * one declaring more than ``MAX_FRAME_BYTES`` (or no length: a chunked
      body) is answered 413 (411) here, before Engine.IO. Engine.IO refuses
      it too, but then closes the session waiting for the client to read the
      close, which a client that only posts never does: the request was
      never answered and its green thread, TCP connection and WSGI slot (the
      process's 1,000, shared with the REST APIs) were held for good, for
      the price of a request's headers;
    * its body is read here, within the body's deadline
      (gateway/slow_clients.py), and handed to Engine.IO read: Engine.IO
      answers "ok" to any failure of its own read, so a stalled body got a
      200 and a traceback in the log instead of the 408;
    * a payload Engine.IO would refuse (``poll_payload_refusal``) is
      answered 400 BAD_PACKET here, for the same hang."""
    def guarded(environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST" and \
                environ.get("PATH_INFO", "").startswith(path):
            declared = environ.get("CONTENT_LENGTH") or ""
            if not declared.isdigit():
                return _refuse(start_response, "411 Length Required", "LENGTH_REQUIRED",
                               "send the body with a Content-Length")
            if int(declared) > MAX_FRAME_BYTES:
                return _refuse(start_response, "413 Request Entity Too Large",
                               "MESSAGE_TOO_LARGE",
                               f"a request body is at most {MAX_FRAME_BYTES} bytes")
            try:
                body = environ["wsgi.input"].read(int(declared))
            except BodyTimeout as exc:
                return _refuse(start_response, "408 Request Timeout", "REQUEST_TIMEOUT",
                               exc.description)
            refusal = poll_payload_refusal(body)
            if refusal is not None:
                log.warning("bad long-polling payload: %s", refusal)
                return _refuse(start_response, "400 Bad Request", "BAD_PACKET", refusal)
            environ["wsgi.input"] = io.BytesIO(body)
        return wsgi_app(environ, start_response)
    return guarded


def _refuse(start_response, status: str, code: str, message: str):
    body = json.dumps({"code": code, "message": message}).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def init_app(app, socketio, settings: Settings, rpc) -> Push:
    """Socket.IO on the app with the message queue, the handlers, and this
    process's bridge consumer (active when the broker picks it). ``rpc()``
    lends a pooled proxy's services."""
    channel = settings.get("EXCHANGE_PUSH_CHANNEL") or "exchange-push"
    amqp_uri = settings.amqp_uri()
    push = Push(socketio, settings, rpc)
    manager = PushManager(amqp_uri, channel=channel, on_disconnect_user=push.disconnect_user)
    # Engine.IO's own ping timing (25 s + 20 s): a starved but live client is
    # not dropped for a late pong.
    socketio.init_app(app, client_manager=manager, max_http_buffer_size=MAX_FRAME_BYTES,
                      serializer=PushPacket)
    app.wsgi_app = guard_polls(app.wsgi_app)
    # Outermost: an attempt over its address's limit costs no more than its count.
    app.wsgi_app = guard_attempts(app.wsgi_app, ConnectionLimits.from_settings(settings),
                                  ratelimit.limiter(app).counters, trusted_proxies(app))
    socketio.on_event("connect", push.on_connect)
    socketio.on_event("disconnect", push.on_disconnect)
    socketio.on_event("authenticate", push.on_authenticate)
    socketio.on_event("subscribe", push.on_subscribe)
    socketio.on_event("unsubscribe", push.on_unsubscribe)
    socketio.on_event("depth_snapshot", push.on_depth_snapshot)
    socketio.on_event("*", push.on_other)
    push.guard_incoming()
    push.bound_send_queues()
    # The private streams through the one active bridge and the message
    # queue; the market streams (book diffs, trades) from this process's own
    # queue straight to its connections: no second broker hop, every process
    # fans out at once, and the diffs' seqs come from the engine either way.
    push.bridge = push_bridge.Bridge(
        amqp_uri, channel, lambda event, data, room: socketio.emit(event, data, to=room), rpc,
        streams="private", corked=manager.gathered,
        orders_filled=lambda fills: ratelimit.limiter(app).orders_filled(fills),
        # How often its flush runs (balances, first-fill take-offs, and the
        # acknowledgements that wait for them); tests widen it.
        flush_every=(settings.int("EXCHANGE_PUSH_FLUSH_MS") / 1000
                     if settings.get("EXCHANGE_PUSH_FLUSH_MS") else push_bridge.FLUSH_EVERY))
    push.market_bridge = push_bridge.Bridge(
        amqp_uri, channel,
        lambda event, data, room: socketio.emit(event, data, to=room, ignore_queue=True), rpc,
        streams="market", corked=push.fanout.corked)
    if settings.get("EXCHANGE_PUSH_BRIDGE", "1") != "0":
        push.bridge.start()
        push.market_bridge.start()
    eventlet.spawn_n(push.expiry_loop)
    eventlet.spawn_n(push.warm_up)
    app.extensions["push"] = push
    return push
