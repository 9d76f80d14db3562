"""Withdrawals: a request holds amount plus fee; each action
(services.wallets.ledger.withdrawal_step names the status it asks for) moves
it through approval, sending or rejection, the database's state machine
refusing an illegal step, each step posting its entries and recording its
transition."""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

import psycopg

from services.common.postgres import refusal_of
from services.wallets import addresses
from services.wallets.amounts import format_amount
from services.wallets.assets import ASSETS, Asset
from services.wallets.errors import (
    IdempotencyConflict,
    InsufficientFunds,
    WithdrawalNotFound,
    from_refusal,
)
from services.wallets.ledger import (
    FEE_REVENUE,
    MARK_SENT,
    PENDING,
    WITHDRAWALS_CLEARING,
    Withdrawal,
    WorkingBalances,
    check_withdrawal_request,
    system_owner,
    withdrawal_entries,
    withdrawal_hold_entry,
    withdrawal_step,
)
from services.wallets.store import LedgerStore, iso, retry_on_conflict

WITHDRAWAL_COLUMNS = """id, user_id, asset, account_id, address, amount, fee, status, txid,
       created_at, updated_at, request_key"""


def _withdrawal(row) -> Withdrawal:
    return Withdrawal(row[0], row[1], row[2], row[3], row[4], int(row[5]), int(row[6]), row[7],
                      row[8], iso(row[9]), iso(row[10]))



class Withdrawals(LedgerStore):
    """request_withdrawal / change_withdrawal and the withdrawals' reads."""

    def _load_withdrawal(self, conn, withdrawal_id: int, lock: bool) -> Withdrawal:
        row = conn.execute(
            f"SELECT {WITHDRAWAL_COLUMNS} FROM wallets.withdrawals WHERE id = %s"
            + (" FOR UPDATE" if lock else ""), (withdrawal_id,)).fetchone()
        if row is None:
            raise WithdrawalNotFound(f"no withdrawal {withdrawal_id}")
        return _withdrawal(row)

    @retry_on_conflict
    def request_withdrawal(self, user: str, asset: Asset, address: str, amount: int,
                           ref: str) -> dict:
        """Hold ``amount`` plus the asset's withdrawal fee and create a pending
        withdrawal; idempotent by (user, ref): a repeat returns the withdrawal
        as it is now."""
        request_key = f"{user}:{ref}"
        with self._transaction() as conn:
            accounts, _ = self._lock(conn, [(user, asset.code)])
            self._require(accounts, [(user, asset.code)], f"withdrawal {ref}")
            account = accounts[(user, asset.code)]
            row = conn.execute(
                f"SELECT {WITHDRAWAL_COLUMNS} FROM wallets.withdrawals WHERE request_key = %s",
                (request_key,)).fetchone()
            if row is not None:
                existing = _withdrawal(row)
                for name, stored_value, value in (("asset", existing.asset, asset.code),
                                                  ("address", existing.address, address),
                                                  ("amount", existing.amount, amount)):
                    if stored_value != value:
                        raise IdempotencyConflict(
                            f"withdrawal ref {ref} was already used with another {name}")
                return existing.as_dict()
            recent = conn.execute(
                "SELECT coalesce(sum(amount), 0) FROM wallets.withdrawals "
                "WHERE user_id = %s AND asset = %s AND created_at > now() - interval '24 hours' "
                "AND status NOT IN ('rejected', 'cancelled')", (user, asset.code)).fetchone()[0]
            fee = check_withdrawal_request(asset, amount, int(recent))
            if account.available < amount + fee:
                raise InsufficientFunds(
                    f"withdrawal {ref}: {user} has {format_amount(asset, account.available)} "
                    f"{asset.code} available, needs {format_amount(asset, amount + fee)} "
                    f"(amount + fee {format_amount(asset, fee)})")
            row = conn.execute(
                "INSERT INTO wallets.withdrawals (request_key, user_id, asset, account_id, address, "
                "amount, fee) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                f"RETURNING {WITHDRAWAL_COLUMNS}",
                (request_key, user, asset.code, account.id, address, amount, fee)).fetchone()
            withdrawal = _withdrawal(row)
            entry = withdrawal_hold_entry(withdrawal.id, account, amount, fee)
            transaction_id, _ = self._post(conn, [entry])[entry.key]
            self._record_transition(conn, withdrawal.id, None, PENDING, user, None, transaction_id)
        return withdrawal.as_dict()

    @retry_on_conflict
    def change_withdrawal(self, withdrawal_id: int, action: str, actor: str,
                          reason: Optional[str] = None, txid: Optional[str] = None,
                          owner: Optional[str] = None) -> dict:
        """Apply ``action`` (approve, reject, cancel, mark_sent) to a withdrawal.

        ``owner``: the user who must own it (cancel); ``txid`` (mark_sent) is
        checked against the asset's format. Repeating the action that led to
        the current status returns the withdrawal unchanged; any other step
        the state machine lacks is IllegalWithdrawalTransition (refused by the
        database's trigger, functions/check_withdrawal_transition.sql).
        """
        with self._transaction() as conn:
            withdrawal = self._load_withdrawal(conn, withdrawal_id, lock=True)
            if owner is not None and withdrawal.user_id != owner:
                raise WithdrawalNotFound(f"no withdrawal {withdrawal_id} of {owner}")
            asset = ASSETS[withdrawal.asset]
            if action == MARK_SENT:
                txid = addresses.normalize_txid(asset, txid)
            target = withdrawal_step(withdrawal, action, txid)
            if target is None:
                return withdrawal.as_dict()
            pairs = [(withdrawal.user_id, asset.code)] + [
                (system_owner(kind), asset.code) for kind in (WITHDRAWALS_CLEARING, FEE_REVENUE)]
            accounts, _ = self._lock(conn, pairs)
            moved = replace(withdrawal, status=target,
                            txid=txid if action == MARK_SENT else withdrawal.txid)
            try:  # the state machine's trigger refuses an illegal step
                row = conn.execute(
                    "UPDATE wallets.withdrawals SET status = %s, txid = %s, updated_at = now() "
                    f"WHERE id = %s RETURNING {WITHDRAWAL_COLUMNS}",
                    (target, moved.txid, withdrawal_id)).fetchone()
            except psycopg.Error as exc:
                refusal = refusal_of(exc)
                if refusal is None:
                    raise
                raise from_refusal(*refusal) from None
            entries = withdrawal_entries(moved, target, accounts)
            balances = WorkingBalances(accounts.values())
            for entry in entries:
                balances.apply(entry, f"withdrawal {withdrawal_id} {action}")
            inserted = self._post(conn, entries) if entries else {}
            transaction_id = inserted[entries[0].key][0] if entries else None
            self._record_transition(conn, withdrawal_id, withdrawal.status, target, actor, reason,
                                    transaction_id)
        return _withdrawal(row).as_dict()

    @staticmethod
    def _record_transition(conn, withdrawal_id, from_status, to_status, actor, reason,
                           transaction_id) -> None:
        conn.execute(
            "INSERT INTO wallets.withdrawal_transitions "
            "(withdrawal_id, from_status, to_status, actor, reason, transaction_id) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (withdrawal_id, from_status, to_status, actor, reason, transaction_id))

    def withdrawal(self, withdrawal_id: int, owner: Optional[str] = None) -> dict:
        """One withdrawal with its transitions (``owner``: only if it is theirs)."""
        with self._connection() as conn:
            withdrawal = self._load_withdrawal(conn, withdrawal_id, lock=False)
            if owner is not None and withdrawal.user_id != owner:
                raise WithdrawalNotFound(f"no withdrawal {withdrawal_id} of {owner}")
            rows = conn.execute(
                "SELECT from_status, to_status, actor, reason, transaction_id, at "
                "FROM wallets.withdrawal_transitions WHERE withdrawal_id = %s ORDER BY at, to_status",
                (withdrawal_id,)).fetchall()
        return {**withdrawal.as_dict(), "transitions": [
            {"from": r[0], "to": r[1], "actor": r[2], "reason": r[3], "transaction_id": r[4],
             "at": iso(r[5])} for r in rows]}

    def withdrawals(self, user: str, limit: int) -> list[dict]:
        """The user's latest withdrawals, newest first."""
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {WITHDRAWAL_COLUMNS} FROM wallets.withdrawals WHERE user_id = %s "
                "ORDER BY id DESC LIMIT %s", (user, limit)).fetchall()
        return [_withdrawal(row).as_dict() for row in rows]
