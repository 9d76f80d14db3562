"""The ledger's store: connections, the journal's one inserting statement, the
account look-ups and locks every money-moving verb builds on, and the verbs
that read (balances, history, audit) or open accounts. The verbs that move
money live beside it: movements.py (hold, release, adjust), trades.py (trade
settlement), deposits.py, withdrawals.py; providers.py composes them.

How money moves in SQL: every write ends in ``POST_ENTRIES``, one statement
that inserts the journal transactions and their postings; the statement
trigger ``wallets.apply_postings`` moves the balances and the CHECK
constraints refuse a negative one. Writes that touch several accounts lock
them in id order first (``SELECT ... ORDER BY id FOR UPDATE``, or a CTE at the
head of the inserting statement), so concurrent writes cannot deadlock.

Fast paths (settle_trades, and hold / release under group commit) are one
autocommitted statement per batch, the CHECK constraints deciding; when one
refuses, the batch is decided again on locked balances, which gives each
request its precise answer. See docs/wallets.md.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Optional

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool

from services.common.postgres import TRANSIENT_ABORTS
from services.wallets.amounts import format_amount
from services.wallets.assets import ASSETS, MARKETS, Asset, Market, fee_rates
from services.wallets.audit import run_audit, run_checkpointed_audit, settled_candidate
from services.wallets.errors import UnknownUser
from services.wallets.ledger import (
    SYSTEM_KINDS,
    USER,
    Account,
    JournalEntry,
    history_entry,
    system_owner,
    trade_key,
)

RETRIES = 3

# ---------------------------------------------------------------- SQL

# Users' fee tiers (settlement's, and the fees a user is shown). The users as
# a JSON array: psycopg's list dumper cost more Python time than the query
# did in PostgreSQL.
FEE_TIERS = """
SELECT t.user_id, t.tier FROM wallets.fee_tiers t
  JOIN json_array_elements_text(%s::json) AS u (id) ON u.id = t.user_id
"""

# Two JSON parameters: the entries [{"k": key, "t": type, "d": details}] and
# their postings [{"k": key, "a": account id, "b": bucket, "s": asset,
# "m": amount}] (amounts as JSON integers: exact, parsed as NUMERIC).
POST_ENTRIES = """
WITH new_transactions AS (
    INSERT INTO wallets.transactions (idempotency_key, type, details)
    SELECT k, t, d FROM json_to_recordset(%s::json) AS e (k text, t text, d json)
    {on_conflict}
    RETURNING id, idempotency_key, created_at
), new_postings AS (
    INSERT INTO wallets.postings (transaction_id, account_id, bucket, asset, amount)
    SELECT t.id, p.a, p.b, p.s, p.m
      FROM json_to_recordset(%s::json) AS p (k text, a bigint, b text, s text, m numeric)
      JOIN new_transactions t ON t.idempotency_key = p.k
)
SELECT idempotency_key, id, created_at FROM new_transactions
"""
POST_NEW_ENTRIES = POST_ENTRIES.format(on_conflict="")
POST_ENTRIES_SKIPPING_KNOWN_KEYS = POST_ENTRIES.format(
    on_conflict="ON CONFLICT (idempotency_key) DO NOTHING")


def _locking_first(statement: str) -> str:
    """``statement`` preceded, in the same statement, by locking the accounts
    whose ids are its first parameter, in id order: the ``locked`` CTE runs as
    a one-time filter before any row is inserted, so before the trigger
    updates them. For the fast paths: one autocommitted statement per batch."""
    return statement.replace(
        "WITH new_transactions AS (",
        "WITH locked AS (\n"
        "    SELECT id FROM wallets.accounts WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE\n"
        "), new_transactions AS (").replace(
        "AS e (k text, t text, d json)\n",
        "AS e (k text, t text, d json)\n     WHERE (SELECT count(*) FROM locked) >= 0\n")


POST_LOCKED_NEW_ENTRIES = _locking_first(POST_NEW_ENTRIES)
POST_LOCKED_ENTRIES_SKIPPING_KNOWN_KEYS = _locking_first(POST_ENTRIES_SKIPPING_KNOWN_KEYS)

STORED_TRANSACTIONS = """
SELECT idempotency_key, id, created_at, details
  FROM wallets.transactions
 WHERE idempotency_key = ANY(%s::text[])
"""

ACCOUNT_ID = "SELECT id FROM wallets.accounts WHERE owner = %s AND asset = %s"

# An asset listed after a user's accounts were opened: the user (or system
# owner) gets its account at the first movement that needs it. Only owners
# that have an account already: an unknown user stays unknown.
OPEN_FOR_KNOWN_OWNERS = """
INSERT INTO wallets.accounts (owner, kind, asset)
SELECT DISTINCT ON (x.o, x.a) x.o, a.kind, x.a
  FROM unnest(%s::text[], %s::text[]) AS x (o, a)
  JOIN wallets.accounts a ON a.owner = x.o
ON CONFLICT (owner, asset) DO NOTHING
"""

ACCOUNT_IDS = """
SELECT owner, asset, id FROM wallets.accounts
 WHERE (owner, asset) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
"""

LOCK_ACCOUNTS = """
SELECT a.id, a.owner, a.kind, a.asset, a.available, a.locked, t.tier
  FROM wallets.accounts a
  LEFT JOIN wallets.fee_tiers t ON t.user_id = a.owner
 WHERE a.id = ANY(%s::bigint[])
 ORDER BY a.id
   FOR UPDATE OF a
"""

OPEN_ACCOUNTS = """
INSERT INTO wallets.accounts (owner, kind, asset)
SELECT o, k, a FROM unnest(%s::text[], %s::text[], %s::text[]) AS x (o, k, a)
ON CONFLICT (owner, asset) DO NOTHING
"""

USERS_BALANCES = """
SELECT owner, asset, available, locked FROM wallets.accounts
 WHERE owner = ANY(%s) AND kind = 'user' ORDER BY owner, asset
"""

HISTORY_PAGE = """
WITH page AS (
    SELECT transaction_id,
           coalesce(sum(amount) FILTER (WHERE bucket = 'available'), 0) AS available_delta,
           coalesce(sum(amount) FILTER (WHERE bucket = 'locked'), 0) AS locked_delta
      FROM wallets.postings
     WHERE account_id = %s AND transaction_id < %s
     GROUP BY transaction_id
     ORDER BY transaction_id DESC
     LIMIT %s
)
SELECT t.id, t.type, t.created_at, t.details, page.available_delta, page.locked_delta
  FROM page JOIN wallets.transactions t ON t.id = page.transaction_id
 ORDER BY t.id DESC
"""


# ---------------------------------------------------------------- helpers


_json = json.JSONEncoder(separators=(",", ":")).encode


def _entries_json(entries: list[JournalEntry]) -> tuple[str, str]:
    """The two JSON parameters of POST_ENTRIES: the entries and their postings."""
    transactions, postings = [], []
    for entry in entries:
        transactions.append({"k": entry.key, "t": entry.type, "d": entry.details})
        key = _json(entry.key)
        for account_id, asset, bucket, amount in entry.postings:  # ints and registry names
            postings.append(
                f'{{"k":{key},"a":{account_id:d},"b":"{bucket}","s":"{asset}","m":{amount:d}}}')
    return _json(transactions), f"[{','.join(postings)}]"


def _bigint_array(ids: Iterable[int]) -> str:
    """A bigint[] parameter as its text literal: psycopg's list dumper cost
    more Python time than the statement's other parameters together."""
    return "{" + ",".join(map(str, ids)) + "}"


def iso(timestamp) -> str:
    return timestamp.isoformat()


def _fee_tier(conn, user: str) -> Optional[str]:
    """``user``'s fee tier (None: the markets' own schedules), read as
    settlement reads it."""
    return dict(conn.execute(FEE_TIERS, (_json([user]),)).fetchall()).get(user)



def retry_on_conflict(verb: Callable) -> Callable:
    """Run a verb again when PostgreSQL aborted it for a deadlock, a
    serialization failure, or a key a concurrent verb inserted first (the
    next attempt sees that row and treats it as a replay)."""
    def retrying(*args, **kwargs):
        for attempt in range(RETRIES):
            try:
                return verb(*args, **kwargs)
            except (*TRANSIENT_ABORTS, pg_errors.UniqueViolation):
                if attempt == RETRIES - 1:
                    raise
    retrying.__name__ = verb.__name__
    retrying.__doc__ = verb.__doc__
    return retrying



# ---------------------------------------------------------------- the store


class LedgerStore:
    """What every ledger verb builds on. Inputs are validated values
    (services.wallets.schemas): minor-unit ints, ``Asset`` objects, checked
    ids. Outputs are JSON-ready dicts with decimal-string amounts.

    Shared by all workers of a container (it holds only the pool and an
    immutable (owner, asset) -> account id cache).
    """

    def __init__(self, pool: ConnectionPool, random_bytes: Callable[[int], bytes] = os.urandom):
        self.pool = pool
        self.random_bytes = random_bytes
        self._account_ids: dict[tuple[str, str], int] = {}
        self._account_stubs: dict[tuple[str, str], Account] = {}  # id only, for the fast path

    # -- connections --------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in autocommit mode: a lone statement commits by
        itself, ``with conn.transaction()`` groups several."""
        with self.pool.connection() as conn:
            if not conn.autocommit:
                conn.autocommit = True
            yield conn

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        with self._connection() as conn, conn.transaction():
            yield conn

    # -- building blocks ----------------------------------------------------

    @staticmethod
    def _post(conn, entries: list[JournalEntry], skip_known_keys: bool = False,
              lock: Optional[list[int]] = None) -> dict:
        """Insert ``entries`` in one statement; returns {key: (transaction id,
        created_at)} of those inserted (with ``skip_known_keys``, an entry
        whose key exists is skipped instead of failing; with ``lock``, those
        account ids are first locked in id order, in the same statement)."""
        transactions, postings = _entries_json(entries)
        if lock is not None:
            statement = POST_LOCKED_ENTRIES_SKIPPING_KNOWN_KEYS if skip_known_keys \
                else POST_LOCKED_NEW_ENTRIES
            rows = conn.execute(statement, (_bigint_array(lock), transactions, postings)).fetchall()
        else:
            statement = POST_ENTRIES_SKIPPING_KNOWN_KEYS if skip_known_keys else POST_NEW_ENTRIES
            rows = conn.execute(statement, (transactions, postings)).fetchall()
        return {key: (transaction_id, created_at) for key, transaction_id, created_at in rows}

    def _stored(self, conn, keys: list[str]) -> dict:
        """{key: (transaction id, created_at, details)} of the keys already journaled."""
        rows = conn.execute(STORED_TRANSACTIONS, (keys,)).fetchall()
        return {key: (transaction_id, created_at, details)
                for key, transaction_id, created_at, details in rows}

    def _account_id(self, conn, owner: str, asset: str) -> int:
        """The account's id (cached: ids never change); UnknownUser if none."""
        account_id = self._account_ids.get((owner, asset))
        if account_id is None:
            row = conn.execute(ACCOUNT_ID, (owner, asset)).fetchone()
            if row is None and self._open_listed(conn, [(owner, asset)]):
                row = conn.execute(ACCOUNT_ID, (owner, asset)).fetchone()
            if row is None:
                raise UnknownUser(f"{owner} has no {asset} account (open_accounts was not called)")
            account_id = self._account_ids[(owner, asset)] = row[0]
        return account_id

    def _account_ids_of(self, conn, pairs: Iterable[tuple[str, str]]) -> dict:
        """{(owner, asset): account id} of those that exist (cached; no locks)."""
        found, missing = {}, []
        for pair in set(pairs):
            account_id = self._account_ids.get(pair)
            if account_id is None:
                missing.append(pair)
            else:
                found[pair] = account_id
        if missing:
            owners, assets = zip(*missing)
            for owner, asset, account_id in conn.execute(ACCOUNT_IDS, (list(owners), list(assets))):
                self._account_ids[(owner, asset)] = found[(owner, asset)] = account_id
            absent = [pair for pair in missing if pair not in found]
            if absent and self._open_listed(conn, absent):
                owners, assets = zip(*absent)
                for owner, asset, account_id in conn.execute(ACCOUNT_IDS,
                                                             (list(owners), list(assets))):
                    self._account_ids[(owner, asset)] = found[(owner, asset)] = account_id
        return found

    @staticmethod
    def _open_listed(conn, pairs: list[tuple[str, str]]) -> bool:
        """Open the accounts of listed assets for owners that have accounts
        (an asset listed after they were opened); whether any pair qualified."""
        pairs = [(owner, asset) for owner, asset in pairs if asset in ASSETS]
        if not pairs:
            return False
        owners, assets = zip(*pairs)
        conn.execute(OPEN_FOR_KNOWN_OWNERS, (list(owners), list(assets)))
        return True

    def _lock(self, conn, pairs: Iterable[tuple[str, str]]) -> tuple[dict, dict]:
        """Lock the (owner, asset) accounts in id order; returns
        ({(owner, asset): Account}, {owner: fee tier}). Missing ones are absent."""
        ids = list(self._account_ids_of(conn, pairs).values())
        accounts, tiers = {}, {}
        for account_id, owner, kind, asset, available, locked, tier in conn.execute(
                LOCK_ACCOUNTS, (ids,)).fetchall():
            accounts[(owner, asset)] = Account(account_id, owner, kind, asset, int(available),
                                               int(locked))
            if tier is not None:
                tiers[owner] = tier
        return accounts, tiers

    @staticmethod
    def _require(accounts: dict, pairs: Iterable[tuple[str, str]], context: str) -> None:
        pairs = list(pairs)
        if all(pair in accounts for pair in pairs):
            return
        for owner, asset in sorted(pairs):
            if (owner, asset) not in accounts:
                raise UnknownUser(f"{context}: {owner} has no {asset} account")

    # -- accounts -----------------------------------------------------------

    def health(self) -> dict:
        """``degraded`` while trades of markets not yet in the catalogue are
        parked (their funds stay held until they settle)."""
        with self._connection() as conn:
            conn.execute("SELECT 1 FROM wallets.accounts LIMIT 1").fetchall()
            parked = conn.execute("SELECT count(*) FROM wallets.parked_trades").fetchone()[0]
        return {"status": "degraded" if parked else "ok", "database": "ok",
                "parked_trades": parked}

    def ensure_system_accounts(self) -> None:
        """The fee revenue and clearing accounts of every listed asset."""
        owners, kinds, assets = [], [], []
        for asset in ASSETS:
            for kind in SYSTEM_KINDS:
                owners.append(system_owner(kind))
                kinds.append(kind)
                assets.append(asset)
        with self._connection() as conn:
            conn.execute(OPEN_ACCOUNTS, (owners, kinds, assets))

    def open_accounts(self, user: str) -> dict:
        """One account per listed asset for ``user`` (idempotent); the balances."""
        codes = sorted(ASSETS)
        with self._connection() as conn:
            conn.execute(OPEN_ACCOUNTS, ([user] * len(codes), [USER] * len(codes), codes))
        return self.balances(user)

    def balances(self, user: str) -> dict:
        found = self.balances_of([user])["balances"].get(user)
        if found is None:
            raise UnknownUser(f"{user} has no accounts (open_accounts was not called)")
        return {"user": user, "balances": found}

    def balances_of(self, users: list[str]) -> dict:
        """Several users' balances in one read, per user as ``balances``
        gives them; a user without accounts is left out (no error: the
        caller pushes the balances of whoever has some)."""
        found: dict[str, dict] = {}
        with self._connection() as conn:
            rows = conn.execute(USERS_BALANCES, (users,)).fetchall()
        for owner, asset, available, locked in rows:
            found.setdefault(owner, {})[asset] = {
                "available": format_amount(ASSETS[asset], int(available)),
                "locked": format_amount(ASSETS[asset], int(locked))}
        return {"balances": found}

    def balance(self, user: str, asset: Asset) -> dict:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT available, locked FROM wallets.accounts WHERE owner = %s AND asset = %s",
                (user, asset.code)).fetchone()
        if row is None:
            raise UnknownUser(f"{user} has no {asset.code} account (open_accounts was not called)")
        return {"user": user, "asset": asset.code,
                "available": format_amount(asset, int(row[0])),
                "locked": format_amount(asset, int(row[1]))}

    # -- fee tiers ----------------------------------------------------------

    def set_fee_tier(self, user: str, tier: Optional[str]) -> dict:
        """Put ``user`` in ``tier`` (None: back to the markets' own schedule)."""
        with self._connection() as conn:
            self._account_id(conn, user, sorted(ASSETS)[0])
            if tier is None:
                conn.execute("DELETE FROM wallets.fee_tiers WHERE user_id = %s", (user,))
            else:
                conn.execute(
                    "INSERT INTO wallets.fee_tiers (user_id, tier) VALUES (%s, %s) "
                    "ON CONFLICT (user_id) DO UPDATE SET tier = excluded.tier, updated_at = now()",
                    (user, tier))
        return {"user": user, "tier": tier}

    def fee_rates(self, user: str) -> dict:
        """The maker and taker rates a settlement charges ``user`` now, per
        market: their tier's in every market, or each market's schedule."""
        with self._connection() as conn:
            tier = _fee_tier(conn, user)
        return {"tier": tier, "rates": {symbol: fee_rates(market, tier).as_dict()
                                        for symbol, market in sorted(MARKETS.items())}}

    def trade_fees(self, user: str, market: Market, trade_ids: list[str]) -> dict:
        """What ``user`` pays on ``market``. ``rates``: as ``fee_rates``.
        ``fees``: of the listed trades settled so far, the fee the ledger
        charged them in each role they had, ``{trade_id: {"maker": {"asset",
        "amount"}, "taker": {...}}}`` (both roles in a self-trade); trades not
        settled yet, or not theirs, are left out. A tier changed since a trade
        does not change what that trade was charged."""
        with self._connection() as conn:
            tier = _fee_tier(conn, user)
            rows = conn.execute(
                "SELECT details FROM wallets.transactions "
                "WHERE idempotency_key = ANY(%s) AND type = 'trade'",
                ([trade_key(market.symbol, trade_id) for trade_id in trade_ids],)
            ).fetchall() if trade_ids else []
        fees: dict[str, dict] = {}
        for (details,) in rows:
            for role in ("maker", "taker"):
                if details[f"{role}_user"] == user:
                    fees.setdefault(details["trade_id"], {})[role] = details[f"{role}_fee"]
        return {"rates": fee_rates(market, tier).as_dict(), "fees": fees}

    # -- history ------------------------------------------------------------

    def history(self, user: str, asset: Asset, before: Optional[int], limit: int) -> dict:
        """A page of the account's journal, newest first. ``next_cursor`` is
        None on the last page."""
        with self._connection() as conn:
            account_id = self._account_id(conn, user, asset.code)
            rows = conn.execute(HISTORY_PAGE, (account_id, before or (1 << 63) - 1,
                                               limit + 1)).fetchall()
        entries = [history_entry(user, asset, r[0], r[1], iso(r[2]), r[3], int(r[4]), int(r[5]))
                   for r in rows[:limit]]
        next_cursor = str(rows[limit - 1][0]) if len(rows) > limit else None
        return {"user": user, "asset": asset.code, "entries": entries, "next_cursor": next_cursor}

    # -- audit --------------------------------------------------------------

    def audit(self) -> list[dict]:
        """Every invariant, checked in one consistent snapshot over the whole
        journal; the findings (empty when the ledger is clean). See
        services.wallets.audit."""
        with self._connection() as conn:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return run_audit(conn)

    def audit_since_checkpoint(self) -> list[dict]:
        """The same checks, the journal verified from the audit checkpoint on
        (the periodic audit: its cost follows what was written since, not the
        ledger's size), the checkpoint moved on when clean."""
        with self._connection() as conn:
            settled = settled_candidate(conn)   # before the snapshot
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                return run_checkpointed_audit(conn, settled)
