"""The ledger audit: every invariant, checked against the database itself.

``run_audit(conn)`` runs each check as one query (the caller opens a
REPEATABLE READ, READ ONLY transaction so they all see the same snapshot) and
returns the findings: ``[{"check": <name>, "detail": <text>}, ...]``, empty
when the ledger is clean. Each check reports at most ``LIMIT`` rows.

The checks (names are stable):

* ``unbalanced_transaction`` -- a journal transaction's postings do not sum
  to zero in some asset;
* ``transaction_without_postings`` -- a transaction with fewer than two postings;
* ``asset_does_not_balance`` -- all postings of an asset do not sum to zero;
* ``posting_asset_mismatch`` -- a posting in another asset than its account;
* ``balance_differs_from_postings`` -- an account's available / locked is not
  the sum of its postings;
* ``negative_balance`` -- a negative available or locked (a positive deposits
  clearing balance, a locked system balance);
* ``missing_system_account`` -- a listed asset lacks one of its system accounts;
* ``equation_does_not_hold`` -- per asset, user balances + fee revenue is not
  deposits - withdrawals;
* ``system_account_misuse`` -- a system account moved by a transaction type
  that must not touch it (deposits clearing: deposits only; withdrawals
  clearing: withdrawals only; fee revenue: trades (their fees), fees and
  adjustments only);
* ``withdrawals_clearing_mismatch`` -- withdrawals clearing differs from the
  sum of sent withdrawals;
* ``open_withdrawals_exceed_locked`` -- pending and approved withdrawals
  (amount + fee) exceed the account's locked balance;
* ``withdrawal_journal_mismatch`` -- a withdrawal's journal entries do not
  match its status.
"""
from __future__ import annotations

from services.wallets.amounts import format_amount
from services.wallets.assets import ASSETS
from services.wallets.ledger import SYSTEM_KINDS

LIMIT = 50


def _amount(asset: str, minor) -> str:
    value = int(minor or 0)
    return format_amount(ASSETS[asset], value) if asset in ASSETS else str(value)


def run_audit(conn) -> list[dict]:
    findings: list[dict] = []

    def found(check: str, detail: str) -> None:
        findings.append({"check": check, "detail": detail})

    for transaction_id, asset, total in conn.execute(f"""
            SELECT transaction_id, asset, sum(amount) FROM wallets.postings
             GROUP BY transaction_id, asset HAVING sum(amount) <> 0
             ORDER BY transaction_id LIMIT {LIMIT}"""):
        found("unbalanced_transaction",
              f"transaction {transaction_id} sums to {_amount(asset, total)} {asset}")

    for transaction_id, key, count in conn.execute(f"""
            SELECT t.id, t.idempotency_key, count(p.transaction_id)
              FROM wallets.transactions t
              LEFT JOIN wallets.postings p ON p.transaction_id = t.id
             GROUP BY t.id HAVING count(p.transaction_id) < 2
             ORDER BY t.id LIMIT {LIMIT}"""):
        found("transaction_without_postings",
              f"transaction {transaction_id} ({key}) has {count} posting(s)")

    for asset, total in conn.execute("""
            SELECT asset, sum(amount) FROM wallets.postings
             GROUP BY asset HAVING sum(amount) <> 0 ORDER BY asset"""):
        found("asset_does_not_balance", f"all {asset} postings sum to {_amount(asset, total)}")

    for transaction_id, account_id, posted, held in conn.execute(f"""
            SELECT p.transaction_id, p.account_id, p.asset, a.asset
              FROM wallets.postings p JOIN wallets.accounts a ON a.id = p.account_id
             WHERE p.asset <> a.asset LIMIT {LIMIT}"""):
        found("posting_asset_mismatch",
              f"transaction {transaction_id} posts {posted} to {held} account {account_id}")

    for account_id, owner, asset, available, locked, posted_available, posted_locked in conn.execute(f"""
            SELECT a.id, a.owner, a.asset, a.available, a.locked,
                   coalesce(p.available, 0), coalesce(p.locked, 0)
              FROM wallets.accounts a
              LEFT JOIN (SELECT account_id,
                                sum(amount) FILTER (WHERE bucket = 'available') AS available,
                                sum(amount) FILTER (WHERE bucket = 'locked') AS locked
                           FROM wallets.postings GROUP BY account_id) p ON p.account_id = a.id
             WHERE a.available <> coalesce(p.available, 0) OR a.locked <> coalesce(p.locked, 0)
             ORDER BY a.id LIMIT {LIMIT}"""):
        found("balance_differs_from_postings",
              f"account {account_id} ({owner} {asset}) holds {_amount(asset, available)} / "
              f"{_amount(asset, locked)}, postings say {_amount(asset, posted_available)} / "
              f"{_amount(asset, posted_locked)}")

    for account_id, owner, kind, asset, available, locked in conn.execute(f"""
            SELECT id, owner, kind, asset, available, locked FROM wallets.accounts
             WHERE locked < 0
                OR (kind <> 'deposits_clearing' AND available < 0)
                OR (kind = 'deposits_clearing' AND available > 0)
                OR (kind <> 'user' AND locked <> 0)
             ORDER BY id LIMIT {LIMIT}"""):
        found("negative_balance",
              f"account {account_id} ({owner} {asset}, {kind}) available "
              f"{_amount(asset, available)}, locked {_amount(asset, locked)}")

    present = set(conn.execute(
        "SELECT kind, asset FROM wallets.accounts WHERE kind <> 'user'").fetchall())
    for asset in sorted(ASSETS):
        for kind in SYSTEM_KINDS:
            if (kind, asset) not in present:
                found("missing_system_account", f"no {kind} account for {asset}")

    for asset, users, fees, deposits, withdrawals in conn.execute("""
            SELECT asset,
                   coalesce(sum(available + locked) FILTER (WHERE kind = 'user'), 0),
                   coalesce(sum(available) FILTER (WHERE kind = 'fee_revenue'), 0),
                   -coalesce(sum(available) FILTER (WHERE kind = 'deposits_clearing'), 0),
                   coalesce(sum(available) FILTER (WHERE kind = 'withdrawals_clearing'), 0)
              FROM wallets.accounts GROUP BY asset ORDER BY asset"""):
        if users + fees != deposits - withdrawals:
            found("equation_does_not_hold",
                  f"{asset}: user balances {_amount(asset, users)} + fees {_amount(asset, fees)} "
                  f"!= deposits {_amount(asset, deposits)} - withdrawals {_amount(asset, withdrawals)}")

    for kind, type_, count in conn.execute("""
            SELECT a.kind, t.type, count(*)
              FROM wallets.postings p
              JOIN wallets.accounts a ON a.id = p.account_id
              JOIN wallets.transactions t ON t.id = p.transaction_id
             WHERE a.kind <> 'user'
               AND NOT (a.kind = 'deposits_clearing' AND t.type = 'deposit'
                     OR a.kind = 'withdrawals_clearing' AND t.type = 'withdrawal'
                     OR a.kind = 'fee_revenue' AND t.type IN ('trade', 'fee', 'adjustment'))
             GROUP BY a.kind, t.type ORDER BY 1, 2"""):
        found("system_account_misuse", f"{count} {type_} posting(s) on a {kind} account")

    for asset, cleared, sent in conn.execute("""
            SELECT a.asset, a.available, coalesce(w.sent, 0)
              FROM wallets.accounts a
              LEFT JOIN (SELECT asset, sum(amount) AS sent FROM wallets.withdrawals
                          WHERE status = 'sent' GROUP BY asset) w ON w.asset = a.asset
             WHERE a.kind = 'withdrawals_clearing' AND a.available <> coalesce(w.sent, 0)
             ORDER BY a.asset"""):
        found("withdrawals_clearing_mismatch",
              f"{asset}: withdrawals clearing {_amount(asset, cleared)}, sent withdrawals "
              f"{_amount(asset, sent)}")

    for account_id, owner, asset, locked, pending in conn.execute(f"""
            SELECT a.id, a.owner, a.asset, a.locked, w.open
              FROM wallets.accounts a
              JOIN (SELECT account_id, sum(amount + fee) AS open FROM wallets.withdrawals
                     WHERE status IN ('pending', 'approved') GROUP BY account_id) w
                ON w.account_id = a.id
             WHERE w.open > a.locked ORDER BY a.id LIMIT {LIMIT}"""):
        found("open_withdrawals_exceed_locked",
              f"account {account_id} ({owner} {asset}) locks {_amount(asset, locked)} but its "
              f"open withdrawals need {_amount(asset, pending)}")

    for withdrawal_id, status, held, released, sent, charged, fee in conn.execute(f"""
            SELECT w.id, w.status, h.id IS NOT NULL, r.id IS NOT NULL, s.id IS NOT NULL,
                   f.id IS NOT NULL, w.fee
              FROM wallets.withdrawals w
              LEFT JOIN wallets.transactions h ON h.idempotency_key = 'withdrawal:' || w.id || ':hold'
              LEFT JOIN wallets.transactions r ON r.idempotency_key = 'withdrawal:' || w.id || ':release'
              LEFT JOIN wallets.transactions s ON s.idempotency_key = 'withdrawal:' || w.id || ':sent'
              LEFT JOIN wallets.transactions f ON f.idempotency_key = 'withdrawal:' || w.id || ':fee'
             WHERE h.id IS NULL
                OR (r.id IS NOT NULL) <> (w.status IN ('rejected', 'cancelled'))
                OR (s.id IS NOT NULL) <> (w.status = 'sent')
                OR (f.id IS NOT NULL) <> (w.status = 'sent' AND w.fee > 0)
             ORDER BY w.id LIMIT {LIMIT}"""):
        found("withdrawal_journal_mismatch",
              f"withdrawal {withdrawal_id} is {status} but hold={held} release={released} "
              f"sent={sent} fee={charged}")

    return findings
