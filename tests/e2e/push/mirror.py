"""A client's copy of one market's book kept from the gateway's snapshot and
diffs, by the rule of gateway/sockets.py (the web client's book.js does the
same): apply a diff when ``first_seq <= held + 1 <= last_seq``, skip it when
``last_seq <= held``, otherwise ask for a new snapshot."""
from __future__ import annotations

import threading
from decimal import Decimal

from tests.e2e.push.kit import Listener


class BookMirror:
    def __init__(self, url: str, market: str):
        self.market = market
        self.url = url
        self.lock = threading.Lock()
        self.seq: int | None = None
        self.levels = {"buy": {}, "sell": {}}
        self.pending: list[dict] = []
        self.snapshots = 0
        self.resyncs = 0
        self.diffs = 0
        self.listener: Listener | None = None

    def connect(self) -> "BookMirror":
        listener = Listener(self.url, events=())
        listener.client.on("depth_snapshot", self._snapshot)
        listener.client.on("depth", self._diff)
        listener.connect()
        self.listener = listener
        with self.lock:
            self.seq, self.pending = None, []
        ack = listener.call("subscribe", {"channel": "depth", "market": self.market})
        assert ack["ok"], ack
        return self

    def close(self):
        if self.listener is not None:
            self.listener.close()

    @property
    def connected(self) -> bool:
        return self.listener is not None and self.listener.client.connected

    def _snapshot(self, data):
        if data["market"] != self.market:
            return
        with self.lock:
            self.snapshots += 1
            self.seq = data["seq"]
            self.levels = {side: {Decimal(p): Decimal(q) for p, q in data[side]}
                           for side in ("buy", "sell")}
            pending, self.pending = self.pending, []
            for diff in pending:
                if not self._apply(diff):
                    break

    def _diff(self, data):
        if data["market"] != self.market:
            return
        with self.lock:
            self._apply(data)

    def _apply(self, diff) -> bool:
        if self.seq is None:
            self.pending.append(diff)
            return False
        if diff["last_seq"] <= self.seq:
            return True
        if diff["first_seq"] > self.seq + 1:
            self.resyncs += 1
            self.seq, self.pending = None, [diff]
            self.listener.client.emit("depth_snapshot", {"market": self.market})
            return False
        for change in diff["changes"]:
            price, quantity = Decimal(change["price"]), Decimal(change["quantity"])
            if quantity == 0:
                self.levels[change["side"]].pop(price, None)
            else:
                self.levels[change["side"]][price] = quantity
        self.seq = diff["last_seq"]
        self.diffs += 1
        return True

    def book(self) -> tuple[int | None, dict]:
        with self.lock:
            return self.seq, {side: dict(levels) for side, levels in self.levels.items()}


def engine_book(depth: dict) -> tuple[int, dict]:
    return depth["seq"], {side: {Decimal(p): Decimal(q) for p, q in depth[side]}
                          for side in ("buy", "sell")}
