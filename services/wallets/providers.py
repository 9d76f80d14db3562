"""The wallets service's Nameko provider: ``Ledger`` hands its workers the
container's ``PostgresLedger``, the ledger's verbs composed from the modules
that move money -- movements.py (hold, release, adjust), trades.py (trade
settlement), deposits.py, withdrawals.py -- over store.py (connections, the
journal's inserting statement, account locks, reads). See docs/wallets.md.
"""
from __future__ import annotations

import os
from typing import Callable

from psycopg_pool import ConnectionPool

from services.common import catalogue
from services.common.group_commit import GroupCommit
from services.common.postgres import PostgresPool
from services.wallets.deposits import Deposits
from services.wallets.movements import Movements
from services.wallets.trades import TradeSettling
from services.wallets.withdrawals import Withdrawals


class PostgresLedger(Movements, TradeSettling, Deposits, Withdrawals):
    """The ledger's verbs (see each base's module). Shared by all workers of
    a container."""

    def __init__(self, pool: ConnectionPool, random_bytes: Callable[[int], bytes] = os.urandom,
                 group_commit: bool = True, batches_in_flight: int = 4):
        """``group_commit``: concurrent hold / release calls share database
        transactions, at most ``batches_in_flight`` at a time (see
        GroupCommit); off, each call runs alone in one statement."""
        super().__init__(pool, random_bytes)
        self._movements = (GroupCommit(self._move_batch, linger_s=0,
                                       max_in_flight=batches_in_flight)
                           if group_commit else None)

    def close(self) -> None:
        if self._movements is not None:
            self._movements.close()


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
