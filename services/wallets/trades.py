"""Trade settlement in the ledger: each trade moves the base and the quote
between maker and taker (out of their locked funds) and the fees to fee
revenue. settle_trades / settle_batches take a fast path -- one statement per
batch, the unique key and the CHECK constraints deciding -- and decide the
batch again with the stored entries (a replay) or on locked balances (funds
short) when it is refused. The consumer that feeds them is
services.wallets.settlement."""
from __future__ import annotations

from typing import Callable, Iterable, NamedTuple, Optional

import eventlet
from psycopg import errors as pg_errors

from services.common.postgres import TRANSIENT_ABORTS
from services.wallets.errors import WalletsError
from services.wallets.ledger import (
    FEE_REVENUE,
    TRADE_FIELDS,
    Account,
    JournalEntry,
    Trade,
    WorkingBalances,
    check_replay,
    settle_trade,
    system_owner,
    trade_result,
)
from services.wallets.store import FEE_TIERS, LedgerStore, _bigint_array, _json, retry_on_conflict

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


class PreparedSettlement(NamedTuple):
    """A batch of trades built and encoded, ready for SETTLE_NEW_TRADES."""

    trades: list[Trade]
    batch: dict  # key -> details of each entry to post
    parameters: tuple[str, ...]  # account ids to lock, then _settlement_parameters



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



class TradeSettling(LedgerStore):
    """settle_trades / settle_batches and their paths."""

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
            key = trade.key  # a property that formats the key: once a trade
            previous = stored[key][2] if key in stored else batch.get(key)
            if previous is not None:
                check_replay(key, previous, trade.request_details(), TRADE_FIELDS)
                continue
            self._require(accounts, ((user, asset) for user in (trade.maker_user, trade.taker_user)
                                     for asset in (trade.market.base, trade.market.quote)),
                          f"trade {key}")
            entry = settle_trade(trade, accounts, tiers)
            if balances is not None:
                balances.apply(entry, f"trade {key}")
            entries.append(entry)
            batch[key] = entry.details
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
