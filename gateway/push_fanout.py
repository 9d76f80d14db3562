"""Writing a room's frame to many websockets: encoded once, the same bytes to each.

Engine.IO's own path costs, per frame and per connection: a put on the
connection's queue, a switch to its writer green thread, the packet encoded
again, the websocket frame built again (and, with ``permessage-deflate``
negotiated, compressed again with the connection's own zlib stream), then a
``sendall``. The bench measured that path as the gateway's main cost at
1,000 connections (bench/README.md, "Live push"). Here, for a connection on
a websocket with nothing waiting to be written to it:

* the frame is built once per emitted packet (python-socketio hands the same
  packet object to every participant of a room emit) and written with one
  non-blocking ``send`` on the connection's socket, from the emitting green
  thread;
* a connection that cannot take the whole frame at once (its reader is
  behind) keeps what was written, and a green thread finishes the frame
  while holding the websocket's send lock; until then, and until its queue
  is empty again, its frames take Engine.IO's queue, in order, and that
  queue is the bounded one (gateway/sockets.py drops a connection whose
  queue is full).

Inside ``corked()`` (the market bridge's push of a batch: a market's trades
frame and its depth diff, which most connections both subscribe to) the
frames for such a connection are gathered and written with one ``send`` per
connection at the block's end: one system call for the gateway and one read
for the client instead of one per frame, and the loopback's TCP work per
segment once. A connection that becomes unable to take a direct write
inside the block has what was gathered for it written first, so its frames
keep their order.

Frames are never interleaved: the websocket's send lock is held for every
write, Engine.IO's writer takes it too, and a green thread switch can only
happen while a writer holds it.

``permessage-deflate`` is refused: one zlib stream per connection made every
frame a per-connection encoding (and ~100 KiB of memory each); the frames
are small JSON, and a compressed frame could not be shared.
"""
from __future__ import annotations

import _socket
import socket
import struct
from contextlib import contextmanager

import eventlet
from engineio.async_drivers.eventlet import WebSocketWSGI
from eventlet.greenio import GreenSocket


def websocket_frame(payload: bytes) -> bytes:
    """An unmasked, final RFC 6455 text frame (a server's frames are never masked)."""
    length = len(payload)
    if length <= 125:
        header = struct.pack("!BB", 0x81, length)
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


def os_socket(sock):
    """The operating system's socket under eventlet's (green sockets may wrap
    green sockets), or None for anything else (TLS...)."""
    while isinstance(sock, GreenSocket):
        sock = sock.fd
    return sock if isinstance(sock, _socket.socket) else None


class Fanout:
    """This process's websockets by Engine.IO session id, and the direct write."""

    def __init__(self, send_buffer: int | None = None):
        # SO_SNDBUF of each websocket when set: with the queue bound, it bounds
        # what one connection holds (the kernel's autotuning otherwise lets a
        # loopback connection's buffer grow to megabytes).
        self.send_buffer = send_buffer
        # Engine.IO session id -> (eventlet websocket, its OS socket).
        self.websockets: dict[str, tuple] = {}
        self._last_packet = None
        self._last_frame = b""
        # Inside corked(): session id -> (Engine.IO socket, websocket, OS
        # socket, the frames gathered, their packets).
        self._gathered: dict[str, tuple] | None = None
        self.direct = 0
        self.writes = 0

    def websocket_class(self):
        """The Engine.IO websocket class to install: registers each websocket
        under its session id while its handler runs; no compression."""
        websockets = self.websockets
        send_buffer = self.send_buffer

        class RegisteredWebSocket(WebSocketWSGI):
            def __init__(self, handler, server):
                eio_socket = handler.__self__

                def registered(ws):
                    raw = os_socket(ws.socket)
                    if raw is None:
                        return handler(ws)
                    if send_buffer:
                        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
                    if raw.family in (socket.AF_INET, socket.AF_INET6):
                        # No Nagle: a frame written right after another would
                        # wait for the client's (delayed, up to 40 ms) ACK.
                        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    websockets[eio_socket.sid] = (ws, raw)
                    try:
                        return handler(ws)
                    finally:
                        websockets.pop(eio_socket.sid, None)

                super().__init__(registered, server)

            def _negotiate_permessage_deflate(self, extensions):
                return None

        return RegisteredWebSocket

    def frame_of(self, pkt) -> bytes | None:
        """The websocket frame of an Engine.IO packet, built once per packet."""
        if pkt is self._last_packet:
            return self._last_frame
        encoded = pkt.encode()
        if not isinstance(encoded, str):
            return None  # binary packets take Engine.IO's path
        self._last_packet, self._last_frame = pkt, websocket_frame(encoded.encode("utf-8"))
        return self._last_frame

    def try_send(self, eio_socket, pkt) -> bool:
        """Writes the packet to the connection now (inside ``corked()``: at
        the block's end) if nothing of it is waiting; False when the caller
        must queue it instead."""
        sid = eio_socket.sid
        registered = self.websockets.get(sid)
        if registered is None:
            return False
        ws, raw = registered
        gathered = self._gathered
        frame = None
        if (eio_socket.upgraded and not (eio_socket.upgrading or eio_socket.closing
                                         or eio_socket.closed or eio_socket.queue.qsize()
                                         or ws._sendlock.locked() or ws.websocket_closed)):
            frame = self.frame_of(pkt)
        if frame is None:
            if gathered is not None and sid in gathered:
                # What was gathered for it goes first: frames keep their order.
                self._write_gathered(gathered.pop(sid))
            return False
        if gathered is not None:
            held = gathered.get(sid)
            if held is None:
                gathered[sid] = (eio_socket, ws, raw, [frame], [pkt])
            else:
                held[3].append(frame)
                held[4].append(pkt)
            self.direct += 1
            return True
        if self._write(ws, raw, frame):
            self.direct += 1
            return True
        return False

    @contextmanager
    def corked(self):
        """Direct writes inside the block are gathered per connection and
        written with one ``send`` each at its end (a nested block joins the
        outer one)."""
        if self._gathered is not None:
            yield
            return
        self._gathered = {}
        try:
            yield
        finally:
            gathered, self._gathered = self._gathered, None
            for entry in gathered.values():
                self._write_gathered(entry)

    def _write_gathered(self, entry) -> None:
        """One connection's gathered frames in one write; if its socket took
        none of them (full since, or broken), its packets take Engine.IO's
        queue in their order, as they would have without the block."""
        eio_socket, ws, raw, frames, packets = entry
        if not self._write(ws, raw, frames[0] if len(frames) == 1 else b"".join(frames)):
            for pkt in packets:
                eio_socket.send(pkt)

    def _write(self, ws, raw, data: bytes) -> bool:
        """Writes to a connection with nothing waiting, without blocking: what
        the kernel does not take now is finished by a green thread holding
        the send lock. False when nothing was written."""
        lock = ws._sendlock
        if not lock.acquire(blocking=False):
            return False
        try:
            sent = raw.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError:
            lock.release()
            return False  # Engine.IO's writer meets the error and closes
        if sent == 0:
            lock.release()
            return False
        self.writes += 1
        if sent < len(data):
            eventlet.spawn_n(self._finish, ws, data[sent:])
        else:
            lock.release()
        return True

    @staticmethod
    def _finish(ws, rest: bytes) -> None:
        try:
            ws.socket.sendall(rest)
        except OSError:
            pass  # the connection is gone: its reader sees it
        finally:
            ws._sendlock.release()

    def cut(self, eio_sid: str) -> None:
        """Ends a connection's TCP connection if its websocket is still open
        (its writer is blocked on a reader that does not read)."""
        registered = self.websockets.get(eio_sid)
        if registered is not None:
            try:
                registered[1].shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def install(self, eio) -> None:
        eio._async = {**eio._async, "websocket": self.websocket_class()}
