"""Make psycopg 3 cooperate with eventlet.

psycopg 3 waits for the server with ``wait_c``, a C loop that calls poll()
itself and so blocks eventlet's hub: one slow query freezes every greenthread
of the process. psycopg only detects gevent's monkey-patching, not eventlet's.

The fix, chosen because it keeps psycopg's own tested wait loops: point psycopg
at its pure-Python ``wait_select`` and give that (and ``wait_conn``, used while
connecting) eventlet's green ``select``/``selectors``. Each wait then parks the
greenthread on the hub, which runs others meanwhile. The libpq C code still
does the protocol work; only the waiting changes.

``install()`` is idempotent and is called by every module that opens
PostgreSQL connections (services.common.postgres). The proof is
tests/integration/test_eventlet_cooperation.py: 20 concurrent 100 ms
``pg_sleep`` calls into one service overlap instead of queueing.
"""
from __future__ import annotations

import psycopg.waiting

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    from eventlet.green import select as green_select
    from eventlet.green import selectors as green_selectors

    psycopg.waiting.select = green_select
    psycopg.waiting.DefaultSelector = green_selectors.DefaultSelector
    psycopg.waiting.wait = psycopg.waiting.wait_select
    _installed = True


def installed() -> bool:
    return _installed and psycopg.waiting.wait is psycopg.waiting.wait_select
