"""Money moving inside one user's account (hold: available -> locked,
release: locked -> available) and adjustments against fee revenue.

A hold or release has one implementation, the SQL function
``wallets.move_funds_batch`` (functions/move_funds_batch.sql), which orders
calls inside its own transactions too; the RPCs reach it one statement per
batch under group commit (services.common.group_commit), each request
answered or refused on its own as if it ran alone, in queue order."""
from __future__ import annotations

from decimal import Decimal
from typing import Optional

from services.common.group_commit import GroupCommit
from services.common.postgres import retry_transient
from services.wallets.amounts import format_amount
from services.wallets.assets import Asset
from services.wallets.errors import from_refusal
from services.wallets.ledger import (
    FEE_REVENUE,
    HOLD,
    MOVEMENT_FIELDS,
    RELEASE,
    WorkingBalances,
    adjustment_entry,
    check_replay,
    movement_result,
    system_owner,
)
from services.wallets.store import LedgerStore, iso, retry_on_conflict

MOVE_FUNDS_BATCH = ("SELECT item, transaction_id, created_at, details, refusal_code, refusal "
                    "FROM wallets.move_funds_batch(%s, %s, %s, %s, %s)")


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
        (outcome,) = self._move_batch([(kind, user, asset, amount, ref)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _move_batch(self, requests: list) -> list:
        """Outcomes (results or typed errors) of many holds / releases, in one
        statement (``wallets.move_funds_batch``): amounts go as exact whole
        units, refusals come back coded."""
        columns = ([kind for kind, *_ in requests], [user for _, user, *_ in requests],
                   [asset.code for _, _, asset, _, _ in requests],
                   [Decimal(format_amount(asset, amount)) for _, _, asset, amount, _ in requests],
                   [ref for *_, ref in requests])

        def run():
            with self._connection() as conn:
                return conn.execute(MOVE_FUNDS_BATCH, columns).fetchall()

        outcomes: list = [None] * len(requests)
        for item, transaction_id, created_at, details, code, message in retry_transient(run):
            outcomes[item - 1] = (from_refusal(code, message) if code is not None
                                  else movement_result(details, transaction_id, iso(created_at)))
        return outcomes

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
