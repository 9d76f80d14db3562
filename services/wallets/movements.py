"""Money moving inside one user's account (hold: available -> locked,
release: locked -> available) and adjustments against fee revenue. Holds and
releases run under group commit (services.common.group_commit): first
optimistically in one statement per batch, decided again on locked balances
when a CHECK constraint refuses one."""
from __future__ import annotations

from typing import Optional

import psycopg
from psycopg import errors as pg_errors

from services.common.group_commit import GroupCommit
from services.wallets.amounts import format_amount
from services.wallets.assets import Asset
from services.wallets.errors import (
    IdempotencyConflict,
    InsufficientFunds,
    InsufficientLocked,
    UnknownUser,
)
from services.wallets.ledger import (
    FEE_REVENUE,
    HOLD,
    MOVEMENTS,
    MOVEMENT_FIELDS,
    RELEASE,
    USER,
    Account,
    JournalEntry,
    WorkingBalances,
    adjustment_entry,
    check_replay,
    movement_key,
    movement_result,
    system_owner,
)
from services.wallets.store import LedgerStore, iso, retry_on_conflict

LOCK_ACCOUNTS_BY_ID = """
SELECT id, owner, kind, asset, available, locked FROM wallets.accounts
 WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE
"""


def _refusal(exc: pg_errors.CheckViolation, message: str) -> Exception:
    """The typed error for a balance the database refused to take below zero."""
    constraint = exc.diag.constraint_name
    if constraint == "accounts_available_nonnegative":
        return InsufficientFunds(message)
    if constraint == "accounts_locked_nonnegative":
        return InsufficientLocked(message)
    return exc



class Movements(LedgerStore):
    """hold / release / adjust_balance. ``_movements``: the GroupCommit the
    holds and releases share (None: each runs alone in one statement)."""

    _movements: Optional[GroupCommit] = None

    def hold(self, user: str, asset: Asset, amount: int, ref: str) -> dict:
        """Lock ``amount`` of the user's available balance; idempotent by ``ref``."""
        return self._move(HOLD, user, asset, amount, ref)

    def release(self, user: str, asset: Asset, amount: int, ref: str) -> dict:
        """Unlock ``amount`` of the user's locked balance; idempotent by ``ref``."""
        return self._move(RELEASE, user, asset, amount, ref)

    def _move(self, kind: str, user: str, asset: Asset, amount: int, ref: str) -> dict:
        if self._movements is not None:
            return self._movements.submit((kind, user, asset, amount, ref))
        return self._move_alone(kind, user, asset, amount, ref)

    def _move_alone(self, kind: str, user: str, asset: Asset, amount: int, ref: str) -> dict:
        """One hold / release as one autocommitted statement; the database's
        CHECK constraints decide whether the balance suffices."""
        with self._connection() as conn:
            account = Account(self._account_id(conn, user, asset.code), user, USER, asset.code, 0, 0)
            entry = MOVEMENTS[kind](account, amount, ref)
            try:
                inserted = self._post(conn, [entry], skip_known_keys=True)
            except pg_errors.CheckViolation as exc:
                bucket = "available" if entry.type == "hold" else "locked"
                raise _refusal(exc, f"{entry.type} {ref}: {user} has less than "
                                    f"{format_amount(asset, amount)} {asset.code} {bucket}") from None
            if entry.key in inserted:
                transaction_id, created_at = inserted[entry.key]
                return movement_result(entry.details, transaction_id, iso(created_at))
            transaction_id, created_at, details = self._stored(conn, [entry.key])[entry.key]
        check_replay(entry.key, details, entry.details, MOVEMENT_FIELDS)
        return movement_result(details, transaction_id, iso(created_at))

    def _move_batch(self, requests: list) -> list:
        """Outcomes (results or typed errors) of many holds / releases.

        First optimistically in one statement, the CHECK constraints deciding;
        if a balance would go below zero, the batch is decided again request
        by request on locked balances (``_move_together``); if that fails
        unexpectedly, each request runs alone so one cannot fail the others."""
        try:
            return self._move_optimistically(requests)
        except pg_errors.CheckViolation:
            pass
        except (psycopg.Error, LookupError):
            return self._move_each_alone(requests)
        try:
            return self._move_together(requests)
        except (psycopg.Error, LookupError):
            return self._move_each_alone(requests)

    def _move_each_alone(self, requests: list) -> list:
        outcomes = []
        for request in requests:
            try:
                outcomes.append(self._move_alone(*request))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def _move_optimistically(self, requests: list) -> list:
        outcomes: list = [None] * len(requests)
        entries: dict[int, JournalEntry] = {}
        first: dict[str, int] = {}
        with self._connection() as conn:
            for i, (kind, user, asset, amount, ref) in enumerate(requests):
                try:
                    account_id = self._account_id(conn, user, asset.code)
                except UnknownUser as exc:
                    outcomes[i] = exc
                    continue
                entries[i] = MOVEMENTS[kind](Account(account_id, user, USER, asset.code, 0, 0),
                                             amount, ref)
                first.setdefault(entries[i].key, i)
            to_post = [entries[i] for i in first.values()]
            inserted = self._post(conn, to_post, skip_known_keys=True,
                                  lock=sorted({e.postings[0].account_id for e in to_post})) \
                if to_post else {}
            missing = [key for key in first if key not in inserted]
            stored = self._stored(conn, missing) if missing else {}
        return self._movement_outcomes(outcomes, entries, first, inserted, stored)

    @staticmethod
    def _movement_outcomes(outcomes: list, entries: dict, first: dict, inserted: dict,
                           stored: dict) -> list:
        """Each request's result: its own entry if it was inserted now, else the
        stored one (a replay, or a conflict when the request differs)."""
        for i, entry in entries.items():
            if outcomes[i] is not None:
                continue
            if entry.key in inserted:
                transaction_id, created_at = inserted[entry.key]
                details = entries[first[entry.key]].details
            else:
                transaction_id, created_at, details = stored[entry.key]
            try:
                check_replay(entry.key, details, entry.details, MOVEMENT_FIELDS)
                outcomes[i] = movement_result(details, transaction_id, iso(created_at))
            except IdempotencyConflict as exc:
                outcomes[i] = exc
        return outcomes

    @retry_on_conflict
    def _move_together(self, requests: list) -> list:
        outcomes: list = [None] * len(requests)
        entries: dict[int, JournalEntry] = {}
        with self._connection() as conn:
            account_ids = {}
            for i, (_, user, asset, _, _) in enumerate(requests):
                try:
                    account_ids[i] = self._account_id(conn, user, asset.code)
                except UnknownUser as exc:
                    outcomes[i] = exc
            keys = [movement_key(kind, ref) for kind, _, _, _, ref in requests]
            with conn.transaction():
                rows = conn.execute(LOCK_ACCOUNTS_BY_ID, (sorted(set(account_ids.values())),)).fetchall()
                accounts = {row[0]: Account(row[0], row[1], row[2], row[3], int(row[4]), int(row[5]))
                            for row in rows}
                stored = self._stored(conn, keys)
                for i, account_id in account_ids.items():
                    kind, _, _, amount, ref = requests[i]
                    entries[i] = MOVEMENTS[kind](accounts[account_id], amount, ref)
                balances = WorkingBalances(accounts.values())
                first: dict[str, int] = {}
                to_post = []
                for i, entry in entries.items():
                    if entry.key in stored or entry.key in first:
                        continue
                    try:
                        balances.apply(entry, f"{entry.type} {entry.details['ref']}")
                    except (InsufficientFunds, InsufficientLocked) as exc:
                        outcomes[i] = exc
                        continue
                    first[entry.key] = i
                    to_post.append(entry)
                inserted = self._post(conn, to_post, skip_known_keys=True) if to_post else {}
            missing = [key for key in first if key not in inserted]
            if missing:  # taken meanwhile by a request on another account: a conflict
                stored.update(self._stored(conn, missing))
        return self._movement_outcomes(outcomes, entries, first, inserted, stored)

    @retry_on_conflict
    def adjust_balance(self, user: str, asset: Asset, amount: int, ref: str, reason: str) -> dict:
        """Credit (amount > 0) or debit (< 0) a user against the fee revenue
        account of the asset; idempotent by ``ref``."""
        fee_owner = system_owner(FEE_REVENUE)
        with self._transaction() as conn:
            accounts, _ = self._lock(conn, [(user, asset.code), (fee_owner, asset.code)])
            self._require(accounts, [(user, asset.code)], f"adjustment {ref}")
            entry = adjustment_entry(accounts[(user, asset.code)], accounts[(fee_owner, asset.code)],
                                     amount, ref, reason)
            stored = self._stored(conn, [entry.key]).get(entry.key)
            if stored is None:
                WorkingBalances(accounts.values()).apply(entry, f"adjustment {ref}")
                transaction_id, created_at = self._post(conn, [entry])[entry.key]
                return movement_result(entry.details, transaction_id, iso(created_at))
        transaction_id, created_at, details = stored
        check_replay(entry.key, details, entry.details, MOVEMENT_FIELDS + ("reason",))
        return movement_result(details, transaction_id, iso(created_at))
