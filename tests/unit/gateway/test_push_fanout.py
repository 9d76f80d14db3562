"""The direct fan-out (gateway/push_fanout.py) over a real socket pair and
eventlet's websocket: frames arrive whole and in order, a connection whose
buffer is full is not written to while it is behind (its frames must take
the queue), and nothing blocks the emitting green thread."""
from __future__ import annotations

import socket
import struct
from types import SimpleNamespace

import eventlet
import eventlet.queue
from eventlet.websocket import RFC6455WebSocket

from gateway.push_fanout import Fanout, os_socket, websocket_frame


def read_frames(sock, count: int) -> list[bytes]:
    """``count`` unmasked frames' payloads from a blocking socket."""
    buffer, frames = b"", []

    def take(n: int) -> bytes:
        nonlocal buffer
        while len(buffer) < n:
            chunk = sock.recv(65536)
            assert chunk, "the stream ended early"
            buffer += chunk
        out, buffer = buffer[:n], buffer[n:]
        return out

    for _ in range(count):
        first, second = take(2)
        assert first == 0x81 and not second & 0x80  # final text frame, unmasked
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", take(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", take(8))[0]
        frames.append(take(length))
    return frames


class Packet:
    """An Engine.IO packet as python-socketio hands it over (one per emit)."""

    def __init__(self, text: str):
        self.text = text

    def encode(self):
        return "4" + self.text


def connection(fanout: Fanout, sid: str, small_buffers: bool = False):
    """A TCP connection over loopback as the gateway holds one: eventlet's
    websocket on the accepted socket, registered under ``sid``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client_end = socket.socket()
    if small_buffers:
        client_end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client_end.connect(listener.getsockname())
    server_end, _ = listener.accept()
    listener.close()
    raw = os_socket(server_end)
    assert raw is not None
    if small_buffers:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ws = RFC6455WebSocket(server_end, {}, version=13)
    fanout.websockets[sid] = (ws, raw)
    eio_socket = SimpleNamespace(sid=sid, upgraded=True, upgrading=False, closing=False,
                                 closed=False, queue=eventlet.queue.Queue())
    client_end.settimeout(10)
    return eio_socket, ws, client_end


def test_frames_of_every_length_class_decode_to_their_payload():
    for size in (0, 125, 126, 65535, 65536, 70000):
        fanout = Fanout()
        _eio_socket, ws, client = connection(fanout, "frames")
        server = ws.socket
        payload = b"x" * size
        server.sendall(websocket_frame(payload))
        client.settimeout(10)
        assert read_frames(client, 1) == [payload]
        server.close()
        client.close()


def test_one_packet_is_encoded_once_and_reaches_every_connection_in_order():
    fanout = Fanout()
    connections = [connection(fanout, f"sid-{n}") for n in range(5)]
    for n in range(20):
        packet = Packet(f'2["trades",{{"n":{n}}}]')
        for eio_socket, _ws, _client in connections:
            assert fanout.try_send(eio_socket, packet)
    for _eio_socket, _ws, client in connections:
        assert read_frames(client, 20) == [f'42["trades",{{"n":{n}}}]'.encode()
                                           for n in range(20)]
    assert fanout.direct == 100


def test_a_frame_larger_than_the_buffer_is_finished_before_anything_else():
    fanout = Fanout()
    eio_socket, _ws, client = connection(fanout, "big", small_buffers=True)
    big = "z" * 200_000
    assert fanout.try_send(eio_socket, Packet(big))  # partly written, finished later
    # Until the rest is written, nothing else goes straight to this connection.
    assert not fanout.try_send(eio_socket, Packet("small"))
    assert read_frames(client, 1) == [("4" + big).encode()]
    for _ in range(100):  # the finishing green thread lets go of the lock
        if not _ws._sendlock.locked():
            break
        eventlet.sleep(0.01)
    assert fanout.try_send(eio_socket, Packet("small"))
    assert read_frames(client, 1) == [b"4small"]


def test_a_connection_with_frames_waiting_is_left_to_its_queue():
    fanout = Fanout()
    eio_socket, _ws, client = connection(fanout, "queued")
    eio_socket.queue.put("a frame waiting for Engine.IO's writer")
    assert not fanout.try_send(eio_socket, Packet("jumps the queue"))
    eio_socket.queue.get()
    assert fanout.try_send(eio_socket, Packet("in turn"))
    assert read_frames(client, 1) == [b"4in turn"]


def test_corked_frames_reach_each_connection_in_order_in_one_write():
    fanout = Fanout()
    connections = [connection(fanout, f"corked-{n}") for n in range(5)]
    with fanout.corked():
        for text in ('2["trades",{"n":1}]', '2["depth",{"n":2}]'):
            packet = Packet(text)  # one packet per room emit, as python-socketio hands it
            for eio_socket, _ws, _client in connections:
                assert fanout.try_send(eio_socket, packet)
        assert fanout.writes == 0  # nothing written inside the block
    assert fanout.writes == 5  # one write per connection for its two frames
    for _eio_socket, _ws, client in connections:
        assert read_frames(client, 2) == [b'42["trades",{"n":1}]', b'42["depth",{"n":2}]']


def test_a_corked_connection_that_cannot_take_its_frames_gets_them_queued_in_order():
    fanout = Fanout()
    eio_socket, _ws, client = connection(fanout, "full", small_buffers=True)
    eio_socket.send = eio_socket.queue.put  # Engine.IO's socket.send: a put on its queue
    first, second = Packet("first"), Packet("second")
    with fanout.corked():
        assert fanout.try_send(eio_socket, first)
        assert fanout.try_send(eio_socket, second)
        # The client stops reading and the kernel's buffer fills before the write.
        raw = fanout.websockets["full"][1]
        try:
            while raw.send(b"\0" * 65536, socket.MSG_DONTWAIT):
                pass
        except BlockingIOError:
            pass
    assert [eio_socket.queue.get_nowait() for _ in range(2)] == [first, second]
    assert eio_socket.queue.qsize() == 0


def test_inside_a_cork_a_packet_that_must_be_queued_lets_the_gathered_frames_go_first():
    fanout = Fanout()
    eio_socket, _ws, client = connection(fanout, "order")
    with fanout.corked():
        assert fanout.try_send(eio_socket, Packet("gathered"))
        eio_socket.queue.put("a frame for Engine.IO's writer")  # now it has a frame waiting
        assert not fanout.try_send(eio_socket, Packet("queued behind it"))
        assert read_frames(client, 1) == [b"4gathered"]  # written before the block's end
    assert fanout.writes == 1
