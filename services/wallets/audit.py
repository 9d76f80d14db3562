"""The ledger audit: every invariant, checked against the database itself.

``run_audit(conn)`` runs the checks (the caller opens a REPEATABLE READ, READ
ONLY transaction so they all see the same snapshot) and returns the findings:
``[{"check": <name>, "detail": <text>}, ...]``, empty when the ledger is clean.
The postings are read twice -- once grouped per transaction, once per account
-- and only problem rows come back; each check reports at most ``LIMIT`` rows.

``run_checkpointed_audit`` (the periodic audit) runs the same checks on the
journal after the audit checkpoint (migration 016) and takes the sums up to
it from the checkpoint, so its cost follows what was written since; it reads
the postings after the checkpoint once, into a temporary table that its
passes share. See its docstring for what it leaves to the full audit, and
docs/wallets.md.

The checks (names are stable):

* ``unbalanced_transaction`` -- a journal transaction's postings do not sum
  to zero in some asset;
* ``transaction_without_postings`` -- a transaction with fewer than two postings;
* ``asset_does_not_balance`` -- all postings of an asset do not sum to zero;
* ``posting_asset_mismatch`` -- a posting in another asset than its account's
  (or on an account that does not exist);
* ``posting_without_transaction`` -- postings naming a missing transaction;
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
  match its status;
* ``hold_without_order`` -- per (user, asset), what the journal holds for
  orders (the entries keyed ``hold:order:<id>``, ``hold:order:<id>:amend:<n>``
  and ``release:order:<id>:final``) differs from what the orders service says
  it holds (``orders.held_for_orders()``: each order's hold less what its end
  released): a hold no order explains, or an order whose hold or release the
  ledger lacks. Both sides count holds and releases only, each written in the
  same transaction as its order row, so a fill executed but not yet settled
  is no false alarm. The periodic audit reads the orders side from the totals
  orders keeps as its orders change (``orders.held_for_orders_kept()``,
  orders' migration 015), not from every order ever placed;
* ``held_totals_drift`` -- full audit only: those kept totals differ from the
  sum over every order (a write to ``orders.orders`` that bypassed its
  triggers);
* ``held_for_finished_order`` -- a finished order whose hold its fills and
  its release do not use up (``orders.finished_orders_holding``): funds held
  that no open order explains;
* ``trade_not_settled`` -- a trade the ledger refused (unsettled_trades);
* ``trade_parked`` -- a trade of a market not yet listed, waiting
  (parked_trades): its funds stay held until it settles.
"""
from __future__ import annotations

from typing import Optional

import psycopg

from services.wallets.amounts import format_amount
from services.wallets.assets import ASSETS
from services.wallets.ledger import SYSTEM_KINDS

LIMIT = 50


def _amount(asset: str, minor) -> str:
    value = int(minor or 0)
    return format_amount(ASSETS[asset], value) if asset in ASSETS else str(value)


# The postings whose transaction matches ``range``, found through their
# accounts: one range probe of the primary key (account_id, transaction_id,
# bucket) per account. An index on transaction_id would serve it too, but
# every posting's insert pays for an index (a BRIN one cost the settler ~12
# buffer accesses per trade, migration 017); the audit runs now and then.
# A posting naming no account cannot be written (apply_postings refuses it,
# accounts are never deleted); the full audit reads every row and reports it.
# (OFFSET 0 keeps the planner from flattening the LATERAL subquery into a
# join, which it plans as a sequential scan of the whole journal.)
_POSTINGS_BY_ACCOUNT = """(
    SELECT p.* FROM wallets.accounts pa
     CROSS JOIN LATERAL (SELECT * FROM wallets.postings p
                          WHERE p.account_id = pa.id AND {range} OFFSET 0) p)"""

# One pass over the postings per transaction: only problem rows come back.
_TRANSACTIONS_PASS = f"""
WITH per_transaction_asset AS MATERIALIZED (
    SELECT p.transaction_id, p.asset,
           sum(p.amount) AS total,
           count(*) AS postings,
           count(*) FILTER (WHERE a.id IS NULL OR a.asset <> p.asset) AS mismatched,
           bool_or(a.kind = 'deposits_clearing') AS deposits_clearing,
           bool_or(a.kind = 'withdrawals_clearing') AS withdrawals_clearing,
           bool_or(a.kind = 'fee_revenue') AS fee_revenue
      FROM {{postings}} p
      LEFT JOIN wallets.accounts a ON a.id = p.account_id
     GROUP BY p.transaction_id, p.asset
), per_transaction AS (
    SELECT transaction_id, sum(postings) AS postings, bool_or(total <> 0) AS unbalanced,
           sum(mismatched) AS mismatched, bool_or(deposits_clearing) AS deposits_clearing,
           bool_or(withdrawals_clearing) AS withdrawals_clearing, bool_or(fee_revenue) AS fee_revenue
      FROM per_transaction_asset GROUP BY transaction_id
), problems AS (
    SELECT coalesce(t.id, x.transaction_id) AS transaction_id, t.idempotency_key, t.type,
           coalesce(x.postings, 0) AS postings, coalesce(x.unbalanced, false) AS unbalanced,
           coalesce(x.mismatched, 0) AS mismatched,
           x.deposits_clearing AND t.type <> 'deposit' AS deposits_clearing_misused,
           x.withdrawals_clearing AND t.type <> 'withdrawal' AS withdrawals_clearing_misused,
           x.fee_revenue AND t.type NOT IN ('trade', 'fee', 'adjustment') AS fee_revenue_misused
      FROM (SELECT * FROM wallets.transactions WHERE id > %(through)s) t
      FULL JOIN per_transaction x ON x.transaction_id = t.id
     WHERE t.id IS NULL OR x.transaction_id IS NULL OR x.postings < 2 OR x.unbalanced
        OR x.mismatched > 0
        OR (x.deposits_clearing AND t.type <> 'deposit')
        OR (x.withdrawals_clearing AND t.type <> 'withdrawal')
        OR (x.fee_revenue AND t.type NOT IN ('trade', 'fee', 'adjustment'))
     ORDER BY 1 LIMIT {LIMIT}
)
SELECT 'transaction', transaction_id, idempotency_key, type, postings, unbalanced, mismatched,
       deposits_clearing_misused, withdrawals_clearing_misused, fee_revenue_misused, NULL, NULL
  FROM problems
UNION ALL
SELECT 'asset', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, asset, sum(total)
  FROM (SELECT asset, total FROM per_transaction_asset
        UNION ALL
        SELECT asset, available + locked FROM wallets.audit_checkpoint_accounts
         WHERE %(checkpointed)s) AS totals
 GROUP BY asset HAVING sum(total) <> 0
"""

# One pass over the postings per account.
_ACCOUNTS_PASS = f"""
WITH per_account AS (
    SELECT account_id, sum(available) AS available, sum(locked) AS locked
      FROM (SELECT account_id,
                   coalesce(sum(amount) FILTER (WHERE bucket = 'available'), 0) AS available,
                   coalesce(sum(amount) FILTER (WHERE bucket = 'locked'), 0) AS locked
              FROM {{postings}} p GROUP BY account_id
            UNION ALL
            SELECT account_id, available, locked FROM wallets.audit_checkpoint_accounts
             WHERE %(checkpointed)s) AS sums
     GROUP BY account_id
)
SELECT a.id, a.owner, a.asset, a.available, a.locked,
       coalesce(p.available, 0), coalesce(p.locked, 0)
  FROM wallets.accounts a
  LEFT JOIN per_account p ON p.account_id = a.id
 WHERE a.available <> coalesce(p.available, 0) OR a.locked <> coalesce(p.locked, 0)
 ORDER BY a.id LIMIT {LIMIT}
"""


# Per (user, asset), what the journal's entries in ``range`` (of
# ``postings``) hold for orders.
_JOURNAL_ORDER_HOLDS = """
    SELECT a.owner, a.asset, sum(p.amount) AS held
      FROM wallets.transactions t
      JOIN {postings} p ON p.transaction_id = t.id AND p.bucket = 'locked'
      JOIN wallets.accounts a ON a.id = p.account_id
     WHERE t.type IN ('hold', 'release')
       AND t.idempotency_key ~ '^(hold:order:[0-9]+(:amend:[0-9]+)?|release:order:[0-9]+:final)$'
       AND {range}
     GROUP BY a.owner, a.asset"""

# The journal's holds and releases for orders against the orders service's
# own account of them (its declared function), per (user, asset), in minor
# units. An order's refs are ``order:<id>`` (+ ``:amend:<n>``, ``:final``):
# holds under other refs (the hold RPC's callers) are not orders'.
_HOLDS_FOR_ORDERS = f"""
WITH journal AS (
    SELECT owner, asset, sum(held) AS held
      FROM ({_JOURNAL_ORDER_HOLDS.format(postings='{postings}', range='t.id > %(through)s')}
            UNION ALL
            SELECT owner, asset, held FROM wallets.audit_checkpoint_order_holds
             WHERE %(checkpointed)s) AS holds
     GROUP BY owner, asset
), orders AS (
    SELECT o.user_id AS owner, o.asset, o.held * power(10::numeric, s.scale) AS held
      FROM {{orders_held}} o
      JOIN registry.asset_scales() s ON s.asset = o.asset
)
SELECT owner, asset, coalesce(j.held, 0), coalesce(o.held, 0)
  FROM journal j FULL JOIN orders o USING (owner, asset)
 WHERE coalesce(j.held, 0) <> coalesce(o.held, 0)
 ORDER BY owner, asset LIMIT {LIMIT}
"""


# The postings after the checkpoint, read ONCE per periodic audit into a
# temporary table of the audit's transaction (dropped at its end): the three
# passes below and the checkpoint's move read that, not the journal. Each of
# them reading the journal through every account (the holds pass also
# looking up each posting's transaction) cost 1.2 s of PostgreSQL for a
# minute at 1,000 orders/s (85 k transactions, 230 k postings on the order
# path bench's database), 0.87 s with the one read; the audit's burst shows
# in the order path's latency tail (bench/README, sessions 16 and 17).
_NEW_POSTINGS = "pg_temp.audit_new_postings"


def _gather_new_postings(conn, through: int) -> None:
    """The postings after ``through`` into _NEW_POSTINGS (the caller's
    transaction: ON COMMIT DROP). The table exists already only when one
    transaction audits twice (tests): it is emptied first."""
    conn.execute("CREATE TEMPORARY TABLE IF NOT EXISTS audit_new_postings "
                 "(LIKE wallets.postings) ON COMMIT DROP", prepare=False)
    conn.execute(f"TRUNCATE {_NEW_POSTINGS}", prepare=False)
    conn.execute(f"INSERT INTO {_NEW_POSTINGS} SELECT p.* FROM "
                 + _POSTINGS_BY_ACCOUNT.format(range="p.transaction_id > %(through)s") + " p",
                 {"through": through}, prepare=False)
    # Autovacuum never analyzes a temporary table, so the planner guessed its
    # size and the bucket's share: 383 rows for 75 k locked postings on the
    # order path bench's database after its set-up, where a periodic holds
    # pass ran for over two minutes (stopped by hand; its plan was not
    # captured; the same statement takes 0.4 s). A guess that small is what
    # puts a sequential scan of this table inside a nested loop. Analyzed:
    # tens of ms, and the whole audit went 0.62 -> 0.54 s on that database.
    conn.execute(f"ANALYZE {_NEW_POSTINGS}", prepare=False)


# The three passes that read postings ({postings}): the full audit's read the
# whole journal; the checkpointed audit's, the postings after the checkpoint
# gathered once (one plan each: a filter that only one of them needs made the
# full audit's plan slower).
# The orders side of hold_without_order: the full audit sums every order
# (orders.held_for_orders), the periodic one reads the totals orders keeps as
# its orders change (orders.held_for_orders_kept: one row per user and asset,
# not the whole history every minute); the full audit also compares the two
# (held_totals_drift).
_FULL_PASSES, _CHECKPOINTED_PASSES = (
    tuple(query.format(postings=postings, orders_held=orders_held)
          for query in (_TRANSACTIONS_PASS, _ACCOUNTS_PASS, _HOLDS_FOR_ORDERS))
    for postings, orders_held in (
        ("wallets.postings", "orders.held_for_orders()"),
        (_NEW_POSTINGS, "orders.held_for_orders_kept()")))

# The kept totals against the sum of every order, per (user, asset).
_HELD_TOTALS_DRIFT = f"""
SELECT owner, asset, coalesce(f.held, 0), coalesce(k.held, 0)
  FROM (SELECT user_id AS owner, asset, held FROM orders.held_for_orders()) f
  FULL JOIN (SELECT user_id AS owner, asset, held FROM orders.held_for_orders_kept()) k
 USING (owner, asset)
 WHERE coalesce(f.held, 0) <> coalesce(k.held, 0)
 ORDER BY owner, asset LIMIT {LIMIT}
"""


# The journal's own checks, of each transaction: what a checkpoint vouches for
# up to its through_id (the others are summed or re-read in full every time).
TRANSACTION_CHECKS = frozenset({"unbalanced_transaction", "transaction_without_postings",
                                "posting_asset_mismatch", "posting_without_transaction",
                                "system_account_misuse"})
# A full audit: every journal row, no checkpoint.
_EVERYTHING = -(2 ** 63)

# Before the audit's snapshot: the checkpoint's candidate, and whether every
# transaction that was writing the journal when it was read has ended (then
# no id up to it can still appear, and the snapshot taken next sees them all).
_CANDIDATE_SETTLED = """
SELECT c.candidate_id,
       NOT EXISTS (SELECT FROM pg_locks l
                    WHERE l.locktype = 'virtualxid' AND l.virtualxid = ANY (c.candidate_vxids))
  FROM wallets.audit_checkpoint c WHERE c.candidate_id IS NOT NULL
"""

# Every writer of the journal holds this lock from before it draws an id
# until it ends.
_JOURNAL_WRITERS = """
SELECT coalesce(array_agg(DISTINCT l.virtualtransaction), '{}') FROM pg_locks l
 WHERE l.locktype = 'relation' AND l.relation = 'wallets.transactions'::regclass
   AND l.mode = 'RowExclusiveLock'
"""

_MOVED_RANGE = "p.transaction_id > %(through)s AND p.transaction_id <= %(new_through)s"

_ADD_ACCOUNTS = f"""
INSERT INTO wallets.audit_checkpoint_accounts AS c (account_id, asset, available, locked)
SELECT p.account_id, min(coalesce(a.asset, p.asset)),
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'available'), 0),
       coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'locked'), 0)
  FROM {_NEW_POSTINGS} p
  LEFT JOIN wallets.accounts a ON a.id = p.account_id
 WHERE {_MOVED_RANGE}
 GROUP BY p.account_id
ON CONFLICT (account_id) DO UPDATE
   SET available = c.available + excluded.available, locked = c.locked + excluded.locked
"""

_ADD_ORDER_HOLDS = f"""
INSERT INTO wallets.audit_checkpoint_order_holds AS c (owner, asset, held)
{_JOURNAL_ORDER_HOLDS.format(postings=_NEW_POSTINGS,
                             range='t.id > %(through)s AND t.id <= %(new_through)s')}
ON CONFLICT (owner, asset) DO UPDATE SET held = c.held + excluded.held
"""

_MOVE_CHECKPOINT = """
INSERT INTO wallets.audit_checkpoint AS c (through_id, candidate_id, candidate_vxids)
VALUES (%(through)s, %(candidate)s, %(vxids)s)
ON CONFLICT (only_row) DO UPDATE
   SET through_id = excluded.through_id, candidate_id = excluded.candidate_id,
       candidate_vxids = excluded.candidate_vxids,
       advanced_at = CASE WHEN c.through_id = excluded.through_id THEN c.advanced_at ELSE now() END
"""


def settled_candidate(conn) -> Optional[int]:
    """Run BEFORE the audit's snapshot is taken: the checkpoint's candidate
    through_id if nothing can still add a journal id up to it, else None."""
    row = conn.execute(_CANDIDATE_SETTLED, prepare=False).fetchone()
    return row[0] if row is not None and row[1] else None


def run_checkpointed_audit(conn, settled: Optional[int]) -> list[dict]:
    """The audit from the checkpoint on (the caller's REPEATABLE READ, read
    write transaction; ``settled``: ``settled_candidate`` read before its
    snapshot). Every check of run_audit, each journal transaction verified
    once: those after the checkpoint are checked here, the sums up to it come
    from it. Balances, per-asset totals and holds for orders are still
    compared in full (checkpoint sums plus what follows), so a balance moved
    behind the journal's back, or any bad row after the checkpoint, is
    reported; a row up to it changed in place (only possible with the
    journal's guards switched off) is the full audit's to find.

    A clean run moves the checkpoint to the candidate if settled, and takes
    this snapshot's last journal id as the next candidate. Another auditor's
    move since this snapshot wins (this one's is dropped)."""
    row = conn.execute("SELECT through_id, candidate_id FROM wallets.audit_checkpoint",
                       prepare=False).fetchone()
    through = row[0] if row is not None else _EVERYTHING
    findings = run_audit(conn, None if row is None else through)
    if any(finding["check"] in TRANSACTION_CHECKS for finding in findings):
        return findings
    # A checkpoint taken while the journal was empty has no candidate
    # (max(id) was NULL): settled is None then, and stays the checkpoint.
    new_through = (settled if row is not None and settled is not None and settled == row[1]
                   and settled > through else through)
    try:
        with conn.transaction():
            if new_through != through:
                moved = {"through": through, "new_through": new_through}
                conn.execute(_ADD_ACCOUNTS, moved, prepare=False)
                conn.execute(_ADD_ORDER_HOLDS, moved, prepare=False)
            candidate = conn.execute("SELECT max(id) FROM wallets.transactions",
                                     prepare=False).fetchone()[0]
            writers = conn.execute(_JOURNAL_WRITERS, prepare=False).fetchone()[0]
            conn.execute(_MOVE_CHECKPOINT, {"through": new_through, "candidate": candidate,
                                            "vxids": writers}, prepare=False)
    except psycopg.errors.SerializationFailure:
        pass
    return findings


def run_audit(conn, through: Optional[int] = None) -> list[dict]:
    """Every check (see the module's docstring). ``through``: a checkpoint's
    through_id (run_checkpointed_audit); None reads the whole journal."""
    params = ({"through": _EVERYTHING, "checkpointed": False} if through is None
              else {"through": through, "checkpointed": True})
    if through is not None:
        _gather_new_postings(conn, through)
    transactions_pass, accounts_pass, holds_for_orders = (
        _FULL_PASSES if through is None else _CHECKPOINTED_PASSES)
    findings: list[dict] = []

    def found(check: str, detail: str) -> None:
        findings.append({"check": check, "detail": detail})

    unbalanced_ids = []
    for (what, transaction_id, key, type_, postings, unbalanced, mismatched, deposits_misused,
         withdrawals_misused, fees_misused, asset, total) in conn.execute(transactions_pass, params,
                                                                         prepare=False):
        if what == "asset":
            found("asset_does_not_balance", f"all {asset} postings sum to {_amount(asset, total)}")
            continue
        if key is None:
            found("posting_without_transaction",
                  f"{postings} posting(s) name transaction {transaction_id}, which does not exist")
            continue
        if postings < 2:
            found("transaction_without_postings",
                  f"transaction {transaction_id} ({key}) has {postings} posting(s)")
        if unbalanced:
            unbalanced_ids.append(transaction_id)
        if mismatched:
            found("posting_asset_mismatch",
                  f"transaction {transaction_id} ({key}) has {mismatched} posting(s) in another asset "
                  "than their account's, or on no account")
        for misused, kind in ((deposits_misused, "deposits_clearing"),
                              (withdrawals_misused, "withdrawals_clearing"),
                              (fees_misused, "fee_revenue")):
            if misused:
                found("system_account_misuse",
                      f"transaction {transaction_id} ({key}), a {type_}, moves a {kind} account")
    if unbalanced_ids:
        for transaction_id, asset, total in conn.execute(
                "SELECT transaction_id, asset, sum(amount) FROM wallets.postings "
                "WHERE transaction_id = ANY(%s) GROUP BY 1, 2 HAVING sum(amount) <> 0 ORDER BY 1, 2",
                (unbalanced_ids,)):
            found("unbalanced_transaction",
                  f"transaction {transaction_id} sums to {_amount(asset, total)} {asset}")

    for account_id, owner, asset, available, locked, posted_available, posted_locked in conn.execute(
            accounts_pass, params, prepare=False):
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
    # Assets in use: a listed asset nobody holds yet needs no system account
    # (they are opened with the first movement, or when wallets learns of it).
    in_use = {row[0] for row in conn.execute("SELECT DISTINCT asset FROM wallets.accounts")}
    for asset in sorted(in_use & set(ASSETS)):
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

    for owner, asset, journal, orders in conn.execute(holds_for_orders, params,
                                                              prepare=False):
        found("hold_without_order",
              f"{owner} {asset}: the ledger holds {_amount(asset, journal)} for orders, "
              f"the orders service accounts for {_amount(asset, orders)}")

    if through is None:
        # The totals the periodic audit reads, against every order (in the
        # orders' decimal units).
        for owner, asset, summed, kept in conn.execute(_HELD_TOTALS_DRIFT, prepare=False):
            found("held_totals_drift",
                  f"{owner} {asset}: the orders hold {summed} in sum, their kept totals "
                  f"say {kept}")

    for order_id, owner, asset, status, still_held in conn.execute(
            "SELECT order_id, user_id, asset, status, still_held "
            "FROM orders.finished_orders_holding(%s)", (LIMIT,)):
        minor = still_held * ASSETS[asset].unit if asset in ASSETS else still_held
        found("held_for_finished_order",
              f"order {order_id} of {owner} is {status} but {_amount(asset, minor)} {asset} "
              "stays held for it")

    for market, trade_id, error in conn.execute(
            f"SELECT market, trade_id, error FROM wallets.unsettled_trades "
            f"ORDER BY parked_at LIMIT {LIMIT}"):
        found("trade_not_settled", f"{market} trade {trade_id} was refused: {error}")

    for market, trade_id, parked_at in conn.execute(
            f"SELECT market, trade_id, parked_at FROM wallets.parked_trades "
            f"ORDER BY parked_at LIMIT {LIMIT}"):
        found("trade_parked", f"{market} trade {trade_id} waits for its market to be listed "
                              f"(parked {parked_at.isoformat()}); its funds stay held")

    return findings
