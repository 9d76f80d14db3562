"""Storage of the wallets service: the ``Ledger`` Nameko provider and the
``PostgresLedger`` object its workers get, whose verbs read what they need,
ask the pure core (services.wallets.ledger) what to post, and write it -- each
verb in one PostgreSQL transaction.

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
from dataclasses import replace
from typing import Callable, Iterable, Iterator, NamedTuple, Optional

import eventlet
import psycopg
from eventlet.event import Event
from eventlet.queue import Empty, LightQueue
from eventlet.semaphore import Semaphore
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool

from services.common import catalogue
from services.common.postgres import TRANSIENT_ABORTS, PostgresPool
from services.wallets import addresses
from services.wallets.amounts import format_amount
from services.wallets.assets import ASSETS, Asset
from services.wallets.audit import run_audit
from services.wallets.errors import (
    IdempotencyConflict,
    InsufficientFunds,
    InsufficientLocked,
    UnknownAddress,
    UnknownUser,
    WalletsError,
    WithdrawalNotFound,
)
from services.wallets.ledger import (
    DEPOSIT_FIELDS,
    DEPOSITS_CLEARING,
    FEE_REVENUE,
    HOLD,
    MOVEMENTS,
    MARK_SENT,
    MOVEMENT_FIELDS,
    PENDING,
    RELEASE,
    SYSTEM_KINDS,
    TRADE_FIELDS,
    USER,
    WITHDRAWALS_CLEARING,
    Account,
    JournalEntry,
    Trade,
    Withdrawal,
    WorkingBalances,
    adjustment_entry,
    check_replay,
    check_withdrawal_request,
    deposit_entry,
    history_entry,
    movement_key,
    movement_result,
    settle_trade,
    system_owner,
    trade_result,
    withdrawal_entries,
    withdrawal_hold_entry,
    withdrawal_step,
)

RETRIES = 3

# ---------------------------------------------------------------- SQL

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

# settle_trades' fast path, one statement: lock the accounts in id order,
# insert the trades' journal entries and their postings; the balance trigger
# and the CHECK constraints decide as for every other entry. Parameters are
# delimited text, not JSON: PostgreSQL parsed each trade's details twice (the
# JSON document, then the json column's own validation) and lexed all postings
# as JSON -- together about a sixth of its time per trade. Entries are
# separated by RS (0x1e), which neither a key (schemas: [A-Za-z0-9_.:/-]) nor
# Python's ASCII JSON output can contain; postings are parallel comma-separated
# lists of integers and registry names. Transaction ids are drawn first so the
# postings join their entry by ordinal instead of by key.
SETTLE_NEW_TRADES = """
WITH locked AS (
    SELECT id FROM wallets.accounts WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE
), entries AS MATERIALIZED (
    SELECT nextval('wallets.transactions_id_seq') AS id, e.k, e.d, e.n
      FROM unnest(string_to_array(%s, chr(30)), string_to_array(%s, chr(30)))
           WITH ORDINALITY AS e (k, d, n)
     WHERE (SELECT count(*) FROM locked) >= 0
), new_transactions AS (
    INSERT INTO wallets.transactions (id, idempotency_key, type, details) OVERRIDING SYSTEM VALUE
    SELECT id, k, 'trade', d::json FROM entries
    RETURNING idempotency_key, id
), new_postings AS (
    INSERT INTO wallets.postings (transaction_id, account_id, bucket, asset, amount)
    SELECT e.id, p.a, p.b, p.s, p.m
      FROM unnest(string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::bigint[],
                  string_to_array(%s, ','), string_to_array(%s, ','),
                  string_to_array(%s, ',')::numeric[]) AS p (n, a, b, s, m)
      JOIN entries e ON e.n = p.n
)
SELECT idempotency_key, id FROM new_transactions
"""

# The users as a JSON array: psycopg's list dumper cost more Python time than
# the query did in PostgreSQL.
FEE_TIERS = """
SELECT t.user_id, t.tier FROM wallets.fee_tiers t
  JOIN json_array_elements_text(%s::json) AS u (id) ON u.id = t.user_id
"""

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

LOCK_ACCOUNTS_BY_ID = """
SELECT id, owner, kind, asset, available, locked FROM wallets.accounts
 WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE
"""

OPEN_ACCOUNTS = """
INSERT INTO wallets.accounts (owner, kind, asset)
SELECT o, k, a FROM unnest(%s::text[], %s::text[], %s::text[]) AS x (o, k, a)
ON CONFLICT (owner, asset) DO NOTHING
"""

USER_BALANCES = """
SELECT asset, available, locked FROM wallets.accounts
 WHERE owner = %s AND kind = 'user' ORDER BY asset
"""

WITHDRAWAL_COLUMNS = """id, user_id, asset, account_id, address, amount, fee, status, txid,
       created_at, updated_at, request_key"""

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


class PreparedSettlement(NamedTuple):
    """A batch of trades built and encoded, ready for SETTLE_NEW_TRADES."""

    trades: list[Trade]
    batch: dict  # key -> details of each entry to post
    parameters: tuple[str, ...]  # account ids to lock, then _settlement_parameters


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


def _settlement_parameters(entries: list[JournalEntry]) -> tuple[str, ...]:
    """SETTLE_NEW_TRADES' parameters after the lock: keys and details
    (RS-separated), then the postings' entry ordinals, account ids, buckets,
    assets and amounts (comma-separated). Every entry is a trade."""
    postings = [posting for entry in entries for posting in entry.postings]
    return ("\x1e".join([entry.key for entry in entries]),
            "\x1e".join([_json(entry.details) for entry in entries]),
            ",".join([str(ordinal) for ordinal, entry in enumerate(entries, 1)
                      for _ in entry.postings]),
            ",".join([str(posting.account_id) for posting in postings]),
            ",".join([posting.bucket for posting in postings]),
            ",".join([posting.asset for posting in postings]),
            ",".join([str(posting.amount) for posting in postings]))


def _bigint_array(ids: Iterable[int]) -> str:
    """A bigint[] parameter as its text literal: psycopg's list dumper cost
    more Python time than the statement's other parameters together."""
    return "{" + ",".join(map(str, ids)) + "}"


def iso(timestamp) -> str:
    return timestamp.isoformat()


def _withdrawal(row) -> Withdrawal:
    return Withdrawal(row[0], row[1], row[2], row[3], row[4], int(row[5]), int(row[6]), row[7],
                      row[8], iso(row[9]), iso(row[10]))


def _refusal(exc: pg_errors.CheckViolation, message: str) -> Exception:
    """The typed error for a balance the database refused to take below zero."""
    constraint = exc.diag.constraint_name
    if constraint == "accounts_available_nonnegative":
        return InsufficientFunds(message)
    if constraint == "accounts_locked_nonnegative":
        return InsufficientLocked(message)
    return exc


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


# ---------------------------------------------------------------- group commit


class GroupCommit:
    """Concurrent calls share database transactions (group commit).

    ``submit(request)`` queues the request and waits; a serving greenthread
    takes everything queued (up to ``max_batch``) as one batch and runs
    ``run_batch(requests) -> outcomes`` with at most ``max_in_flight``
    batches at a time. While those run, new requests queue up, so the batch
    size follows the load: one request alone when idle, many under
    concurrency. An outcome that is an exception is raised in its caller only.
    """

    def __init__(self, run_batch: Callable[[list], list], max_batch: int = 200,
                 max_in_flight: int = 2):
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.requests: LightQueue = LightQueue()
        self.slots = Semaphore(max_in_flight)
        self.server = None

    def submit(self, request):
        if self.server is None or self.server.dead:
            self.server = eventlet.spawn(self._serve)
        waiter = Event()
        self.requests.put((request, waiter))
        return waiter.wait()

    def close(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server = None

    def _serve(self) -> None:
        while True:
            self.slots.acquire()
            batch = [self.requests.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.requests.get_nowait())
                except Empty:
                    break
            eventlet.spawn_n(self._run, batch)

    def _run(self, batch: list) -> None:
        try:
            outcomes = self.run_batch([request for request, _ in batch])
        except Exception as exc:  # a bug: every caller of the batch sees it
            outcomes = [exc] * len(batch)
        finally:
            self.slots.release()
        for (_, waiter), outcome in zip(batch, outcomes):
            if isinstance(outcome, BaseException):
                waiter.send_exception(outcome)
            else:
                waiter.send(outcome)


# ---------------------------------------------------------------- the ledger


class PostgresLedger:
    """The ledger's verbs. Inputs are validated values (services.wallets.schemas):
    minor-unit ints, ``Asset`` objects, checked ids. Outputs are JSON-ready
    dicts with decimal-string amounts.

    Shared by all workers of a container (it holds only the pool and an
    immutable (owner, asset) -> account id cache).
    """

    def __init__(self, pool: ConnectionPool, random_bytes: Callable[[int], bytes] = os.urandom,
                 group_commit: bool = True, batches_in_flight: int = 4):
        """``group_commit``: concurrent hold / release calls share database
        transactions, at most ``batches_in_flight`` at a time (see
        GroupCommit); off, each call runs alone in one statement."""
        self.pool = pool
        self.random_bytes = random_bytes
        self._account_ids: dict[tuple[str, str], int] = {}
        self._account_stubs: dict[tuple[str, str], Account] = {}  # id only, for the fast path
        self._movements = (GroupCommit(self._move_batch, max_in_flight=batches_in_flight)
                           if group_commit else None)

    def close(self) -> None:
        if self._movements is not None:
            self._movements.close()

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
        with self._connection() as conn:
            rows = conn.execute(USER_BALANCES, (user,)).fetchall()
        if not rows:
            raise UnknownUser(f"{user} has no accounts (open_accounts was not called)")
        return {"user": user, "balances": {
            asset: {"available": format_amount(ASSETS[asset], int(available)),
                    "locked": format_amount(ASSETS[asset], int(locked))}
            for asset, available, locked in rows}}

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

    # -- hold / release / adjust --------------------------------------------

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

    # -- trades -------------------------------------------------------------

    def settle_trades(self, trades: list[Trade]) -> list[dict]:
        """Settle a batch in one database transaction: all of it or none of it.

        Idempotent per trade (key ``trade:<market>:<trade_id>``): a trade seen
        before -- in an earlier batch or earlier in this one -- is not posted
        again, and its original result is returned; with different content it
        is an IdempotencyConflict. Returns one result per trade, in order.

        Fast path: read the fee tiers without locks, build the entries, then
        one autocommitted statement locks the accounts in id order and
        inserts everything, the unique key and the CHECK constraints deciding.
        A trade settled before makes that statement fail on its key: the batch
        is then decided again with the stored entries. If a balance would go
        below zero, it is decided again on locked balances, which names the
        trade the funds do not cover.
        """
        with self._connection() as conn:
            return self._post_settlement(conn, self._prepare_settlement(conn, trades))

    def settle_batches(self, batches: Iterable[list[Trade]],
                       refused: Optional[Callable[[list[Trade], WalletsError], list]] = None
                       ) -> list[list[dict]]:
        """Settle ``batches`` one after the other, each exactly as
        ``settle_trades`` would (one database transaction, all or nothing,
        idempotent per trade), pipelined: while batch N's statement runs in
        PostgreSQL, batch N+1 is built here (tiers read on a second
        connection). Batch N+1 is posted only once batch N is decided, so
        batches commit in order, one at a time, on one connection.

        A batch the ledger refuses (a typed ``WalletsError``) raises, and no
        later batch is posted -- unless ``refused(trades, error)`` is given: it
        is then called in order, before the next batch is posted, and what it
        returns stands for that batch's results. Returns the results of every
        batch, in order.
        """
        results: list[list[dict]] = []
        in_flight = None
        with self._connection() as writer, self._connection() as reader:
            try:
                for trades in batches:
                    try:
                        prepared = self._prepare_settlement(reader, trades)
                    except WalletsError as exc:
                        prepared = exc
                    if in_flight is not None:
                        results.append(in_flight.wait())
                    in_flight = eventlet.spawn(self._post_prepared, writer, trades, prepared, refused)
                if in_flight is not None:
                    results.append(in_flight.wait())
                    in_flight = None
            finally:
                if in_flight is not None:  # never hand a busy connection back to the pool
                    try:
                        in_flight.wait()
                    except Exception:  # already failing: the first error is the one raised
                        pass
        return results

    def _post_prepared(self, conn, trades: list[Trade], prepared, refused) -> list[dict]:
        try:
            if isinstance(prepared, WalletsError):
                raise prepared
            return self._post_settlement(conn, prepared)
        except WalletsError as exc:
            if refused is None:
                raise
            return refused(trades, exc)

    def _prepare_settlement(self, conn, trades: list[Trade]) -> "PreparedSettlement":
        """Everything the fast path's statement needs, read without locks."""
        stubs = self._account_stubs
        accounts = {}
        for pair, account_id in self._account_ids_of(conn, self._settlement_pairs(trades)).items():
            stub = stubs.get(pair)
            if stub is None:  # ids never change: build the (balance-less) Account once
                stub = stubs[pair] = Account(account_id, pair[0], "", pair[1], 0, 0)
            accounts[pair] = stub
        users = sorted({user for trade in trades for user in (trade.maker_user, trade.taker_user)})
        tiers = dict(conn.execute(FEE_TIERS, (_json(users),)).fetchall())
        entries, batch = self._settlement_entries(trades, accounts, tiers, {}, None)
        lock = sorted({posting.account_id for entry in entries for posting in entry.postings})
        return PreparedSettlement(trades, batch, (_bigint_array(lock), *_settlement_parameters(entries)))

    def _post_settlement(self, conn, prepared: "PreparedSettlement") -> list[dict]:
        """The fast path's one statement, or the batch decided again when it
        is refused (see settle_trades)."""
        try:
            rows = conn.execute(SETTLE_NEW_TRADES, prepared.parameters).fetchall()
        except pg_errors.CheckViolation as exc:
            if exc.diag.constraint_name not in ("accounts_available_nonnegative",
                                                "accounts_locked_nonnegative"):
                raise
            return self._settle_exactly(prepared.trades)
        except (pg_errors.UniqueViolation, *TRANSIENT_ABORTS):
            # A trade settled before (a redelivered batch), or by a concurrent
            # settler: decide the batch with the stored entries.
            return self._settle_with_replays(prepared.trades)
        inserted = {key: (transaction_id, None) for key, transaction_id in rows}
        return self._settlement_results(prepared.trades, inserted, prepared.batch, {})

    def _settle_with_replays(self, trades: list[Trade]) -> list[dict]:
        try:
            return self._settle_optimistically(trades)
        except pg_errors.CheckViolation as exc:
            if exc.diag.constraint_name not in ("accounts_available_nonnegative",
                                                "accounts_locked_nonnegative"):
                raise
        return self._settle_exactly(trades)

    @staticmethod
    def _settlement_pairs(trades: list[Trade]) -> set:
        fee_owner = system_owner(FEE_REVENUE)
        pairs = set()
        for trade in trades:
            market = trade.market
            for owner in (trade.maker_user, trade.taker_user, fee_owner):
                pairs.add((owner, market.base))
                pairs.add((owner, market.quote))
        return pairs

    @retry_on_conflict
    def _settle_optimistically(self, trades: list[Trade]) -> list[dict]:
        with self._connection() as conn:
            accounts = {(owner, asset): Account(account_id, owner, "", asset, 0, 0)
                        for (owner, asset), account_id
                        in self._account_ids_of(conn, self._settlement_pairs(trades)).items()}
            users = sorted({user for trade in trades for user in (trade.maker_user, trade.taker_user)})
            tiers = dict(conn.execute(FEE_TIERS, (_json(users),)).fetchall())
            stored = self._stored(conn, [trade.key for trade in trades])
            entries, batch = self._settlement_entries(trades, accounts, tiers, stored, None)
            lock = sorted({posting.account_id for entry in entries for posting in entry.postings})
            inserted = self._post(conn, entries, lock=lock) if entries else {}
        return self._settlement_results(trades, inserted, batch, stored)

    @retry_on_conflict
    def _settle_exactly(self, trades: list[Trade]) -> list[dict]:
        with self._transaction() as conn:
            accounts, tiers = self._lock(conn, self._settlement_pairs(trades))
            stored = self._stored(conn, [trade.key for trade in trades])
            entries, batch = self._settlement_entries(trades, accounts, tiers, stored,
                                                      WorkingBalances(accounts.values()))
            inserted = self._post(conn, entries) if entries else {}
        return self._settlement_results(trades, inserted, batch, stored)

    def _settlement_entries(self, trades: list[Trade], accounts: dict, tiers: dict, stored: dict,
                            balances: Optional[WorkingBalances]) -> tuple[list, dict]:
        """The entries of the trades not settled before (replays are checked
        against what was stored); with ``balances``, each is also checked
        against the locked balances."""
        entries: list[JournalEntry] = []
        batch: dict[str, dict] = {}
        for trade in trades:
            previous = stored[trade.key][2] if trade.key in stored else batch.get(trade.key)
            if previous is not None:
                check_replay(trade.key, previous, trade.request_details(), TRADE_FIELDS)
                continue
            self._require(accounts, ((user, asset) for user in (trade.maker_user, trade.taker_user)
                                     for asset in (trade.market.base, trade.market.quote)),
                          f"trade {trade.key}")
            entry = settle_trade(trade, accounts, tiers)
            if balances is not None:
                balances.apply(entry, f"trade {trade.key}")
            entries.append(entry)
            batch[trade.key] = entry.details
        return entries, batch

    @staticmethod
    def _settlement_results(trades: list[Trade], inserted: dict, batch: dict, stored: dict) -> list:
        results = []
        for trade in trades:
            if trade.key in inserted:
                results.append(trade_result(batch[trade.key], inserted[trade.key][0]))
            else:
                transaction_id, _, details = stored[trade.key]
                results.append(trade_result(details, transaction_id))
        return results

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

    # -- deposits -----------------------------------------------------------

    def deposit_address(self, user: str, asset: Asset) -> dict:
        """The user's deposit address for ``asset``, created on first request."""
        with self._connection() as conn:
            account_id = self._account_id(conn, user, asset.code)
            for _ in range(5):
                row = conn.execute(
                    "SELECT address, created_at FROM wallets.deposit_addresses "
                    "WHERE user_id = %s AND asset = %s", (user, asset.code)).fetchone()
                if row is not None:
                    return {"user": user, "asset": asset.code, "address": row[0],
                            "created_at": iso(row[1])}
                address = addresses.deposit_address(asset, self.random_bytes(20))
                conn.execute(
                    "INSERT INTO wallets.deposit_addresses (asset, address, user_id, account_id) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (asset.code, address, user, account_id))
        raise RuntimeError("could not allocate a unique deposit address")

    @retry_on_conflict
    def credit_deposit(self, asset: Asset, address: str, amount: int, txid: str,
                       confirmations: int) -> dict:
        """Credit a chain deposit once per (asset, txid), and only from the
        asset's required confirmations on; before that nothing is written and
        the status is ``awaiting_confirmations``."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT user_id FROM wallets.deposit_addresses WHERE asset = %s AND address = %s",
                (asset.code, address)).fetchone()
            if row is None:
                raise UnknownAddress(f"{address} is not a {asset.code} deposit address")
            user = row[0]
            clearing = system_owner(DEPOSITS_CLEARING)
            accounts, _ = self._lock(conn, [(user, asset.code), (clearing, asset.code)])
            entry = deposit_entry(accounts[(user, asset.code)], accounts[(clearing, asset.code)],
                                  amount, txid, address)
            stored = self._stored(conn, [entry.key]).get(entry.key)
            if stored is None:
                if confirmations < asset.confirmations:
                    return {"status": "awaiting_confirmations", "asset": asset.code,
                            "address": address, "txid": txid,
                            "amount": format_amount(asset, amount),
                            "confirmations": confirmations, "required": asset.confirmations}
                transaction_id, created_at = self._post(conn, [entry])[entry.key]
                return {"status": "credited",
                        **movement_result(entry.details, transaction_id, iso(created_at))}
        transaction_id, created_at, details = stored
        check_replay(entry.key, details, entry.details, DEPOSIT_FIELDS)
        return {"status": "credited", **movement_result(details, transaction_id, iso(created_at))}

    # -- withdrawals --------------------------------------------------------

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
        the state machine lacks is IllegalWithdrawalTransition.
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
            entries = withdrawal_entries(moved, target, accounts)
            balances = WorkingBalances(accounts.values())
            for entry in entries:
                balances.apply(entry, f"withdrawal {withdrawal_id} {action}")
            row = conn.execute(
                "UPDATE wallets.withdrawals SET status = %s, txid = %s, updated_at = now() "
                f"WHERE id = %s RETURNING {WITHDRAWAL_COLUMNS}",
                (target, moved.txid, withdrawal_id)).fetchone()
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
        """Every invariant, checked in one consistent snapshot; the findings
        (empty when the ledger is clean). See services.wallets.audit."""
        with self._connection() as conn:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return run_audit(conn)


class Ledger(PostgresPool):
    """Nameko provider: workers get the container's PostgresLedger."""

    def setup(self):
        super().setup()
        # The registry's catalogue (assets, markets, fees), loaded before
        # the system accounts of its assets are opened, then followed.
        self.catalogue = catalogue.container_follower(self.container)
        self.ledger = PostgresLedger(self.pool)
        self.ledger.ensure_system_accounts()

    def start(self):
        # A newly listed asset gets its system accounts as soon as we learn of it.
        self.catalogue.listeners.append(lambda old, new: self.ledger.ensure_system_accounts())
        self.catalogue_thread = catalogue.follow_in(self.container, self.catalogue)

    def stop(self):
        self.catalogue.stop()
        self.ledger.close()
        super().stop()

    def kill(self):
        self.catalogue.stop()
        self.ledger.close()
        super().kill()

    def get_dependency(self, worker_ctx):
        return self.ledger
