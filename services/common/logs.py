"""Structured JSON logs that follow an order through every process.

Each process of the stack writes one JSON object per line to
``run/logs/json/<process>.jsonl`` (rotated: 5 files of 20 MB), next to its
plain stdout log. A line carries the time (UTC, ms), level, process, logger,
message, and the ids it concerns: ``request_id``, ``user_id``, ``order_id``,
``order_ids`` (a trade has two), ``trade_id``.

Where the ids come from:
- Nameko workers: the worker's context data. ``bind(order_id=...)`` puts an
  id there, and Nameko sends context data with every RPC and event the worker
  makes, so the callee's lines carry it too. ServiceMetrics
  (services.common.metrics) tells this module which worker runs in the
  current greenthread, and logs one line per RPC / event handler with the ids
  of its arguments and result.
- Queue consumers (engine commands, settlement, ingest, order events): the
  message body's own ids (``message_ids``), one line per message.
- The gateway: one access line per request, with the ids of its response.

``follow(order_id)`` reads the files back and returns one order's lines in
time order: ``make logs ORDER=<id>``.

Installed only in processes the stack starts (``EXCHANGE_LOG_DIR`` set):
tests that run services in-process keep pytest's own logging. The trace
lines (``trace``: the per-RPC, per-message and access lines) are written to
the JSON log only; the plain log keeps everything else (starts, connections,
warnings, errors).
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from greenlet import getcurrent

ID_KEYS = ("request_id", "user_id", "order_id", "trade_id")
# Context data keys: "request_id" is Nameko's own (rpc_requests.py) and is not
# propagated under that name, so the log's keys have their own prefix.
CONTEXT_PREFIX = "log_"

TRACE = logging.getLogger("exchange.trace")
# The trace lines (one per RPC, event handler, consumed message part and
# gateway request) go to the JSON log only, written in batches
# (install_for_process). Propagated, each was also a line of the plain log
# (Nameko's stdout handler at INFO), written with a system call of its own:
# the active engine wrote about 500 a second under the order-path bench, 7 %
# of its samples (bench/README.md, session 20). Off until installed, so a
# process without JSON logs does not make them at all.
TRACE.propagate = False
TRACE.setLevel(logging.WARNING)

_process: str | None = None

# The current worker and ids live on the greenlet itself: eventlet's
# corolocal cost ~25 us per access, several times per log line.
WORKER_ATTR, EXTRA_ATTR = "_exchange_log_worker", "_exchange_log_extra"


# ---------------------------------------------------------------- context

def enter_worker(worker_ctx) -> None:
    setattr(getcurrent(), WORKER_ATTR, worker_ctx)


def leave_worker(worker_ctx) -> None:
    current = getcurrent()
    if getattr(current, WORKER_ATTR, None) is worker_ctx:
        setattr(current, WORKER_ATTR, None)


def current_ids() -> dict:
    """The ids bound in the current greenthread (worker context data or
    ``context`` below)."""
    ids = {}
    current = getcurrent()
    worker = getattr(current, WORKER_ATTR, None)
    if worker is not None:
        data = worker.context_data
        for key in ID_KEYS:
            value = data.get(CONTEXT_PREFIX + key)
            if value is not None:
                ids[key] = value
        # The gateway's request id travels as Nameko's "request_id" (gateway/rpc.py).
        if "request_id" not in ids and isinstance(data.get("request_id"), str):
            ids["request_id"] = data["request_id"]
    extra = getattr(current, EXTRA_ATTR, None)
    if extra:
        ids.update(extra)
    return ids


def bind(**ids) -> None:
    """Attach ids to the current worker (and every call it makes next)."""
    current = getcurrent()
    worker = getattr(current, WORKER_ATTR, None)
    clean = {k: v for k, v in ids.items() if k in ID_KEYS and v is not None}
    if worker is not None:
        for key, value in clean.items():
            worker.context_data[CONTEXT_PREFIX + key] = value
    else:
        setattr(current, EXTRA_ATTR, {**(getattr(current, EXTRA_ATTR, None) or {}), **clean})


def unbind() -> None:
    setattr(getcurrent(), EXTRA_ATTR, None)


# ---------------------------------------------------------------- ids of messages

# "orderId": the gateway's /api/v3 answers (Binance's names), so that
# `make logs ORDER=<id>` finds a partner's request line too.
_ORDER_KEYS = ("order_id", "maker_order_id", "taker_order_id", "orderId")
_BATCH_ITEMS = 1000   # a log line names at most this many orders of one batch


def message_ids(body) -> dict:
    """The ids a message or result concerns: ``{"order_ids": [...], "trade_id",
    "user_id"}`` (keys only when present). Looks at the top level and at a
    command envelope (``{"command": {...}}``) or an answer (``{"order": {...}}``).
    A list (a batch's answers, ``orders.place_orders``) gives every item's
    order ids, and its user and trade only when it holds one item."""
    ids: dict = {}
    if isinstance(body, list):
        for item in body[:_BATCH_ITEMS]:
            for order_id in message_ids(item).get("order_ids", ()):
                ids.setdefault("order_ids", [])
                if order_id not in ids["order_ids"]:
                    ids["order_ids"].append(order_id)
        if len(body) == 1:
            ids = {**message_ids(body[0]), **ids}
        return ids
    if not isinstance(body, dict):
        return ids
    for part in (body, body.get("command"), body.get("order")):
        if not isinstance(part, dict):
            continue
        for key in _ORDER_KEYS:
            value = part.get(key)
            if isinstance(value, (int, str)) and not isinstance(value, bool):
                ids.setdefault("order_ids", [])
                if str(value) not in ids["order_ids"]:
                    ids["order_ids"].append(str(value))
        trade = part.get("trade_id")
        if isinstance(trade, (int, str)) and not isinstance(trade, bool):
            ids.setdefault("trade_id", str(trade))
        user = part.get("user_id", part.get("taker_user_id"))
        if isinstance(user, str):
            ids.setdefault("user_id", user)
    return ids


def trace(message: str, *args, ids: dict | None = None, at: float | None = None) -> None:
    """An INFO line on the ``exchange.trace`` logger with ``ids`` attached,
    stamped ``at`` (unix time: when a request began, for a line written when
    it ended) or now; free when JSON logs are not installed."""
    if TRACE.isEnabledFor(logging.INFO):
        TRACE.info(message, *args, extra={"ids": ids or {}, "at": at})


def trace_each(lines: list[tuple[str, dict]]) -> None:
    """Several trace lines, ``(message, ids)`` each, as ONE record: one pass
    through the logging machinery for all the parts of a consumer's batch
    (an engine batch's events, a command batch's commands), still written as
    one JSON line per part, so ``follow`` finds each order's own step. A
    record per part cost the active engine and the orders events consumer
    about a tenth of their samples (bench/README.md, session 22). Free when
    JSON logs are not installed."""
    if lines and TRACE.isEnabledFor(logging.INFO):
        TRACE.info("%d trace lines", len(lines), extra={"lines": lines})


# ---------------------------------------------------------------- format

class JsonFormatter(logging.Formatter):
    def __init__(self, process: str):
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        created = getattr(record, "at", None) or record.created
        head = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
                  + f".{int(created * 1000) % 1000:03d}Z",
            "t": round(created, 6),
            "level": record.levelname,
            "process": self.process,
            "logger": record.name,
        }
        context = current_ids()
        lines = getattr(record, "lines", None)
        if lines is not None:   # trace_each: a line per part, in one record
            return "\n".join(self._line(record, head, message, {**context, **(ids or {})})
                             for message, ids in lines)
        context.update(getattr(record, "ids", None) or {})
        return self._line(record, head, record.getMessage(), context)

    def _line(self, record: logging.LogRecord, head: dict, message: str, ids: dict) -> str:
        line = {**head, "msg": message}
        orders = ids.pop("order_ids", None)
        if orders:
            if len(orders) == 1:
                ids.setdefault("order_id", orders[0])
            else:
                ids["order_ids"] = orders
        if "order_id" in ids:
            ids["order_id"] = str(ids["order_id"])
        line.update(ids)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


class BatchedFileHandler(logging.Handler):
    """JSON lines to ``path``, rotated like RotatingFileHandler, but written in
    batches: a record is formatted when logged (its ids are those of the
    greenthread that logs it) and written with the others every
    ``FLUSH_S`` seconds, every ``BATCH`` lines, or at once from WARNING up.
    A write and flush per line cost the order path more than the metrics."""

    FLUSH_S = 0.5
    BATCH = 500

    def __init__(self, path: Path, max_bytes: int, backups: int):
        super().__init__()
        self.path, self.max_bytes, self.backups = Path(path), max_bytes, backups
        self.pending: list[str] = []
        self.stream = open(self.path, "a", encoding="utf-8")
        self.flushed_at = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.pending.append(self.format(record))
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING or len(self.pending) >= self.BATCH \
                or time.monotonic() - self.flushed_at > self.FLUSH_S:
            self._write()

    def flush(self) -> None:
        self.acquire()
        try:
            self._write()
        finally:
            self.release()

    def _write(self) -> None:
        self.flushed_at = time.monotonic()
        if not self.pending or self.stream is None:
            return
        lines, self.pending = self.pending, []
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        if self.stream.tell() >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self.stream.close()
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self.stream = open(self.path, "a", encoding="utf-8")

    def close(self) -> None:
        self.flush()
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
                self.stream = None
        finally:
            self.release()
        super().close()


def _flush_periodically(handler: BatchedFileHandler) -> None:
    """Lines logged in a quiet moment reach the file within a second."""
    import eventlet
    while handler.stream is not None:
        eventlet.sleep(handler.FLUSH_S)
        handler.flush()


def log_dir() -> Path | None:
    value = os.environ.get("EXCHANGE_LOG_DIR")
    return Path(value) if value else None


def install_for_process(process: str, level: int = logging.INFO) -> bool:
    """JSON lines to ``<EXCHANGE_LOG_DIR>/json/<process>.jsonl``, rotated;
    once per process; nothing without EXCHANGE_LOG_DIR. True when installed."""
    global _process
    if _process is not None:
        return True
    directory = log_dir()
    if directory is None:
        return False
    directory = directory / "json"
    directory.mkdir(parents=True, exist_ok=True)
    handler = BatchedFileHandler(directory / f"{process}.jsonl", max_bytes=20 * 1024 * 1024,
                                 backups=4)
    handler.setFormatter(JsonFormatter(process))
    import eventlet
    eventlet.spawn(_flush_periodically, handler)
    # Neither format uses the thread, process or caller of a record, and under
    # eventlet finding the current thread costs ~250 us per record.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    TRACE.addHandler(handler)
    TRACE.setLevel(logging.INFO)
    _process = process
    return True


# ---------------------------------------------------------------- read back

def _matches(line: dict, order_id: str) -> bool:
    return str(line.get("order_id")) == order_id or order_id in (line.get("order_ids") or ())


def follow(order_id: str, directory: Path | None = None, limit: int = 10_000) -> list[dict]:
    """Every JSON line about ``order_id`` (also as one of a trade's orders,
    or of lines with that order's trade ids), all processes, in time order."""
    directory = (directory or log_dir() or Path("run/logs")) / "json"
    order_id = str(order_id)
    lines: list[dict] = []
    parsed: list[dict] = []
    for path in sorted(directory.glob("*.jsonl*")):
        with open(path, encoding="utf-8", errors="replace") as handle:
            for raw in handle:
                if order_id not in raw and '"trade_id"' not in raw:
                    continue
                try:
                    parsed.append(json.loads(raw))
                except ValueError:
                    continue
    trades = set()
    for line in parsed:
        if _matches(line, order_id):
            lines.append(line)
            if line.get("trade_id"):
                trades.add(line["trade_id"])
    # Lines that name only the trade (market data, settlement batches).
    seen = {id(line) for line in lines}
    for line in parsed:
        if id(line) not in seen and line.get("trade_id") in trades:
            lines.append(line)
    lines.sort(key=lambda line: line.get("t", 0))
    return lines[-limit:]


def render(line: dict) -> str:
    ids = " ".join(f"{k}={line[k]}" for k in ("order_id", "order_ids", "trade_id", "user_id")
                   if line.get(k) is not None)
    return f"{line.get('ts')} {line.get('process', '?'):<18} {line.get('level', ''):<7} " \
           f"{line.get('msg', '')}  {ids}"
