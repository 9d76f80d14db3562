"""Deadlines for a client's request: a slow or stalled client cannot hold a
connection, a green thread and one of the server's ``MAX_CONCURRENT_REQUESTS``
slots for longer than they allow.

eventlet's WSGI server bounds only the wait for a request line (its
``keepalive``, per read). Without these, a client that sent a request line
and then nothing, or its headers one byte a minute, or a declared body it
never sent, held its slot for good: a thousand such connections (one
machine, a few kilobytes) shut the gateway for everyone, the classic
"slowloris" and "slow POST". What bounds each phase:

* the request line: ``request_line_s`` in all, from the moment the server
  waits for it (the idle keep-alive wait included);
* the headers: ``headers_s`` in all, after the request line;
* the body: ``body_s`` in all, from the end of the headers, however it
  trickles (bodies here are at most 64 KB: ``gateway.app.MAX_BODY_BYTES``);
* every other socket operation (writing an answer to a client that does not
  read, a WebSocket's frames): ``idle_s`` without progress. Longer than
  Engine.IO's ping interval plus its timeout (25 + 20 s), so a live push
  connection, which hears from its client at every ping, never meets it.

A client over the headers' or the body's deadline gets a 408 with the JSON
body every refusal has, and the connection is closed. Behind the zones'
HAProxy its own timeouts apply first; these hold on one box too.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import eventlet
from werkzeug.exceptions import RequestTimeout

from gateway.errors import request_timeout_text


@dataclass(frozen=True)
class Deadlines:
    """Seconds; their values are config/defaults.env's."""
    request_line_s: float
    headers_s: float
    body_s: float
    idle_s: float

    @classmethod
    def from_settings(cls, settings) -> "Deadlines":
        """``EXCHANGE_GATEWAY_{REQUEST_LINE,HEADERS,BODY,IDLE}_TIMEOUT_S``,
        each a number of seconds above zero."""
        values = {}
        for field in ("request_line_s", "headers_s", "body_s", "idle_s"):
            key = f"EXCHANGE_GATEWAY_{field[:-2].upper()}_TIMEOUT_S"
            raw = settings.get(key) or ""
            try:
                value = float(raw)
            except ValueError:
                value = 0.0
            if not 0 < value < float("inf"):
                raise ValueError(f"{key} must be a number of seconds above 0, not {raw!r}")
            values[field] = value
        return cls(**values)


class BodyTimeout(RequestTimeout):
    """The body did not arrive within its deadline: a 408 through the app's
    error handler (gateway/app.py). Engine.IO, which reads its long-polling
    POST bodies itself and answers "ok" to any failure, is handed bodies
    read already (gateway/sockets.py, ``guard_polls``)."""


class DeadlineInput:
    """``environ["wsgi.input"]`` whose reads all end within ``body_s`` of its
    making (the end of the headers), however the bytes trickle: a green
    timer, not the socket's timeout, which each byte would restart. On
    expiry the connection is marked to close (``on_expiry``: the rest of the
    body is never read, the reader's state no longer matters) and
    ``BodyTimeout`` is raised."""

    def __init__(self, wrapped, body_s: float, on_expiry, clock=time.monotonic):
        self._wrapped = wrapped
        self._body_s = body_s
        self._deadline = clock() + body_s
        self._on_expiry = on_expiry
        self._clock = clock

    def _within(self, read, *args):
        timer = eventlet.Timeout(max(self._deadline - self._clock(), 0))
        try:
            return read(*args)
        except eventlet.Timeout as exc:
            if exc is not timer:
                raise
            self._on_expiry()
            raise BodyTimeout(request_timeout_text("body", self._body_s)) from None
        finally:
            timer.cancel()

    def read(self, *args):
        return self._within(self._wrapped.read, *args)

    def readline(self, *args):
        return self._within(self._wrapped.readline, *args)

    def readlines(self, *args):
        return self._within(self._wrapped.readlines, *args)

    def __iter__(self):
        return iter(self.readline, b"")

    def __getattr__(self, name):
        # get_socket (WebSocket upgrades), the 100-continue settings, ...
        return getattr(self._wrapped, name)
