"""The wallets relay's messages: the ``balances_changed`` rows of one outbox
read go out as one message.

The ledger writes one ``balances_changed`` row per statement that moves user
balances (an acceptance batch's holds, an events delivery's releases, a
settlement batch: announce_balances_changed.sql), and the relay used to
publish each as a message of its own: about three per engine batch under
load, each a publish with its confirm here and a delivery to every gateway's
push bridge, which only notes the users to re-read at its next flush. Pure.
"""
from __future__ import annotations

import json

from services.common import json_codec
from services.common.events import BALANCES_CHANGED, VERSION_KEY

# The changes one merged message carries at most: a backlog after a broker
# outage (a read of hundreds of settlement rows) goes as several messages of
# a bounded size, not as one of megabytes.
MERGED_CHANGES = 5000


def _announces(row) -> bool:
    """Whether a row is addressed as a balances_changed (its payload unread)."""
    return row[1] == BALANCES_CHANGED.exchange and row[2] == BALANCES_CHANGED.name


def _changes(row) -> list | None:
    """A row's ``changes`` when it is a version-1 balances_changed of the
    wallets exchange, else None (it goes out as it is)."""
    payload = row[4]
    if not _announces(row):
        return None
    try:
        body = json.loads(payload)
    except (TypeError, ValueError):
        return None
    if not isinstance(body, dict) or body.get(VERSION_KEY) != BALANCES_CHANGED.version:
        return None
    changes = body.get("changes")
    if not isinstance(changes, list) \
            or not all(isinstance(c, dict) and isinstance(c.get("user"), str)
                       and isinstance(c.get("asset"), str) for c in changes):
        return None
    return changes


def merge_balances_changed(rows: list) -> list:
    """The messages for one outbox read of the wallets stream (rows ``(id,
    exchange, routing_key, message_id, payload text)`` in commit order): each
    run of consecutive balances_changed rows becomes ONE message at the
    place of its first row, its changes the union of theirs (each ``{user,
    asset}`` once, ordered by user then asset, as one row's are), at most
    MERGED_CHANGES each; every other row passes as it is, in its place. A
    merged message's id names its first and last row's (``<first>..<last>``):
    a read again after a nack that reaches further merges under another id.
    The rows are still deleted by their own ids (Relay.publish_batch)."""
    out: list = []
    run: list = []          # (row, its changes) of the current run

    def flush() -> None:
        if len(run) == 1:
            out.append(run[0][0])
        elif run:
            union = sorted({(c["user"], c["asset"]) for _, changes in run for c in changes})
            first, last = run[0][0], run[-1][0]
            message_id = f"{first[3]}..{last[3]}"
            for start in range(0, len(union), MERGED_CHANGES):
                payload = {VERSION_KEY: BALANCES_CHANGED.version,
                           "changes": [{"user": user, "asset": asset}
                                       for user, asset in union[start:start + MERGED_CHANGES]]}
                part = message_id if start == 0 else f"{message_id}#{start // MERGED_CHANGES}"
                out.append((first[0], first[1], first[2], part,
                            json_codec.dumps(payload).decode()))
        run.clear()

    for index, row in enumerate(rows):
        # A row with no balances_changed beside it goes as it is, unread: a
        # settlement's payload is some 20 KB, and at low rates most rows are
        # alone in their read.
        alone = not ((index > 0 and _announces(rows[index - 1]))
                     or (index + 1 < len(rows) and _announces(rows[index + 1])))
        changes = None if alone else _changes(row)
        if changes is None:
            flush()
            out.append(row)
        else:
            run.append((row, changes))
    flush()
    return out
