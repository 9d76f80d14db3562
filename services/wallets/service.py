"""The ``wallets`` Nameko service: balances, holds, trade settlement, deposits
and withdrawals on a double-entry ledger in PostgreSQL.

Each RPC validates its input (services.wallets.schemas), calls one verb of
the ``Ledger`` provider (which asks the pure core and writes in one database
transaction); ``balances_changed`` leaves through the outbox, written by the
ledger's trigger in that same transaction (migration 011).

Units: amounts and prices are decimal strings in whole units (``"0.015"``
BTC); ints are accepted as whole units; floats are refused. Results carry
amounts as decimal strings with the asset's full scale. Errors are the typed
exceptions of services.wallets.errors (over RPC: RemoteError with that class
name as ``exc_type`` and ``"<CODE>: ..."`` as value); when one is raised
nothing was written. See docs/wallets.md for the whole contract.
"""
from __future__ import annotations

import logging
import time

from nameko.timer import timer

from services.common import json_codec, rpc_replies
from services.common.outbox import OutboxRelay
from services.common.deadlines import rpc
from services.common.errors import CodedError, Forbidden
from services.common.principals import AdminPrincipal
from services.common.metrics import ServiceMetrics
from services.wallets import addresses, schemas
from services.wallets.announcements import merge_balances_changed
from services.wallets.errors import WalletsError
from services.wallets.ledger import APPROVE, CANCEL, MARK_SENT, REJECT
from services.wallets.providers import Ledger
from services.wallets.settlement import TradeSettlement

rpc_replies.install()
json_codec.install()

ADMIN_VERB_ERRORS = (WalletsError, CodedError)
# Seconds between periodic ledger audits (each reads every account, and the
# journal since the audit checkpoint). The first runs when the process starts
# (the timer is eager): a wallets process restarted after a crash checks the
# ledger at once instead of a minute later, and the audit metrics exist from
# the start (Prometheus' LedgerAuditStale has a value to judge).
AUDIT_INTERVAL_S = 60

log = logging.getLogger(__name__)
# The relay's linger (services.common.outbox.Relay.linger_s): the gateways'
# push re-reads the balances it announces every 250 ms anyway, so 50 ms
# instead of 20 is not seen, and at 1,000 orders/s wallets' CPU per order
# dropped from 98-109 to 58 us (single runs, session 14, bench/README.md).
RELAY_LINGER_S = 0.05


class WalletsService:
    name = "wallets"

    books = Ledger()  # the provider; `ledger` is the history RPC below
    caller = AdminPrincipal()
    # balances_changed leaves through the outbox: the ledger's trigger
    # writes it in the transaction that moves the money (migration 011).
    # Read at most every RELAY_LINGER_S while money moves faster than that
    # (holds, releases, settlements: one row each): one read for several.
    # A read's balances_changed rows go out as one message (announcements).
    relay = OutboxRelay("wallets", linger_s=RELAY_LINGER_S, merge=merge_balances_changed)
    # Settles the engines' trades from the ordered settlement queue (one active
    # wallets process at a time, the others standing by).
    settlement = TradeSettlement()
    metrics = ServiceMetrics()

    # -- health & accounts --------------------------------------------------

    @rpc
    def health(self):
        return {"service": self.name, **self.books.health()}

    @rpc(expected_exceptions=WalletsError)
    def open_accounts(self, user):
        """Open the user's accounts, one per listed asset (idempotent; called by
        the users service at sign-up). A user without accounts is unknown."""
        return self.books.open_accounts(schemas.load_user_id(user))

    @rpc(expected_exceptions=WalletsError)
    def balances(self, user):
        return self.books.balances(schemas.load_user_id(user))

    @rpc(expected_exceptions=WalletsError)
    def balances_of(self, users):
        """``{"balances": {user: {asset: {available, locked}}}}`` of up to
        MAX_BATCH users in one read (the live push re-reads the balances of
        every user whose money moved, one call per flush instead of one per
        user); users without accounts are left out."""
        return self.books.balances_of(schemas.load_user_ids(users))

    @rpc(expected_exceptions=WalletsError)
    def balance(self, user, asset):
        return self.books.balance(schemas.load_user_id(user), schemas.load_asset(asset))

    @rpc(expected_exceptions=WalletsError)
    def fee_rates(self, user):
        """``{"tier", "rates": {market: {"maker", "taker"}}}``: what the next
        settlement charges ``user`` in each market (their tier's, or the
        market's own); the gateway's Binance trade-fee answer."""
        return self.books.fee_rates(schemas.load_user_id(user))

    @rpc(expected_exceptions=WalletsError)
    def trade_fees(self, user, market, trade_ids):
        """The fees ``user`` pays on ``market``: ``rates`` (maker, taker: their
        tier's or the market's own, as the next settlement charges them) and
        ``fees``, what the ledger charged them on each listed trade settled so
        far (at most MAX_BATCH ids; the gateway shows these as Binance's
        commissions)."""
        return self.books.trade_fees(schemas.load_user_id(user), schemas.load_market(market),
                                     schemas.load_trade_ids(trade_ids))

    # -- holds --------------------------------------------------------------

    @rpc(expected_exceptions=WalletsError)
    def hold(self, user, asset, amount, ref):
        """Move ``amount`` from available to locked. Idempotent by ``ref``
        (global): a repeat returns the original result."""
        user = schemas.load_user_id(user)
        asset = schemas.load_asset(asset)
        result = self.books.hold(user, asset, schemas.load_amount(asset, amount),
                                  schemas.load_ref(ref))
        return result

    @rpc(expected_exceptions=WalletsError)
    def release(self, user, asset, amount, ref):
        """Move ``amount`` from locked back to available. Idempotent by ``ref``."""
        user = schemas.load_user_id(user)
        asset = schemas.load_asset(asset)
        result = self.books.release(user, asset, schemas.load_amount(asset, amount),
                                     schemas.load_ref(ref))
        return result

    # -- trades -------------------------------------------------------------

    @rpc(expected_exceptions=WalletsError)
    def settle_trades(self, trades):
        """Settle a batch of trades in one database transaction (all or none).
        Idempotent per (market, trade id). Returns ``{"trades": [...]}`` with
        each trade's journal transaction id and maker / taker fees."""
        loaded = schemas.load_trades(trades)
        results = self.books.settle_trades(loaded)
        return {"trades": results}

    @rpc(expected_exceptions=ADMIN_VERB_ERRORS)
    def set_fee_tier(self, user, tier):
        """Give ``user`` a fee tier (None: the markets' own schedule). An admin
        verb: a user's fees are money (needs an admin's access token in the
        call's context data)."""
        self.caller.admin()
        return self.books.set_fee_tier(schemas.load_user_id(user), schemas.load_fee_tier(tier))

    # -- deposits -----------------------------------------------------------

    @rpc(expected_exceptions=WalletsError)
    def deposit_address(self, user, asset):
        """The user's unique deposit address for ``asset`` (created once)."""
        return self.books.deposit_address(schemas.load_user_id(user), schemas.load_asset(asset))

    @rpc(expected_exceptions=WalletsError)
    def credit_deposit(self, asset, address, amount, txid, confirmations):
        """For the operator or a chain watcher: credit a deposit to the owner of
        ``address`` once per (asset, txid), once it has the asset's required
        confirmations (before: ``status: awaiting_confirmations``, nothing written)."""
        asset = schemas.load_asset(asset)
        address = addresses.normalize_address(asset, address)
        result = self.books.credit_deposit(asset, address, schemas.load_amount(asset, amount),
                                            addresses.normalize_txid(asset, txid),
                                            schemas.load_confirmations(confirmations))
        return result

    # -- withdrawals --------------------------------------------------------

    @rpc(expected_exceptions=WalletsError)
    def request_withdrawal(self, user, asset, address, amount, ref):
        """Hold amount + the asset's fee and open a pending withdrawal.
        Idempotent by (user, ref)."""
        user = schemas.load_user_id(user)
        asset = schemas.load_asset(asset)
        result = self.books.request_withdrawal(
            user, asset, addresses.normalize_address(asset, address),
            schemas.load_amount(asset, amount), schemas.load_ref(ref))
        return result

    # Admin verbs: done for the admin whose access token is in the call's
    # context data (services.common.principals); ``admin`` must name that
    # admin (username or subject) and is recorded as the actor.
    def _admin(self, admin) -> str:
        principal = self.caller.admin()
        admin = schemas.load_user_id(admin, "admin")
        if admin not in (principal.subject, principal.username):
            raise Forbidden("ADMIN_MISMATCH", "admin must name the admin whose token is presented",
                            "admin")
        return admin

    @rpc(expected_exceptions=ADMIN_VERB_ERRORS)
    def approve_withdrawal(self, withdrawal_id, admin):
        return self._change_withdrawal(withdrawal_id, APPROVE, self._admin(admin))

    @rpc(expected_exceptions=ADMIN_VERB_ERRORS)
    def reject_withdrawal(self, withdrawal_id, admin, reason):
        """Reject a pending or approved withdrawal: its hold is released."""
        return self._change_withdrawal(withdrawal_id, REJECT, self._admin(admin),
                                       reason=schemas.load_text(reason, "reason"))

    @rpc(expected_exceptions=ADMIN_VERB_ERRORS)
    def mark_withdrawal_sent(self, withdrawal_id, txid, admin):
        """Record that an approved withdrawal went out in chain transaction ``txid``."""
        return self._change_withdrawal(withdrawal_id, MARK_SENT, self._admin(admin),
                                       txid=schemas.load_sent_txid(txid))

    @rpc(expected_exceptions=WalletsError)
    def cancel_withdrawal(self, user, withdrawal_id):
        """The owner cancels a pending withdrawal: its hold is released."""
        user = schemas.load_user_id(user)
        return self._change_withdrawal(withdrawal_id, CANCEL, user, owner=user)

    def _change_withdrawal(self, withdrawal_id, action, actor, **kwargs):
        result = self.books.change_withdrawal(schemas.load_withdrawal_id(withdrawal_id), action,
                                               actor, **kwargs)
        return result

    @rpc(expected_exceptions=WalletsError)
    def withdrawal(self, withdrawal_id, user=None):
        """One withdrawal and its transitions (with ``user``: only the owner's)."""
        owner = None if user is None else schemas.load_user_id(user)
        return self.books.withdrawal(schemas.load_withdrawal_id(withdrawal_id), owner)

    @rpc(expected_exceptions=WalletsError)
    def withdrawals(self, user, limit=None):
        _, limit = schemas.load_page(None, limit)
        return self.books.withdrawals(schemas.load_user_id(user), limit)

    # -- history, corrections, audit ----------------------------------------

    @rpc(expected_exceptions=WalletsError)
    def ledger(self, user, asset, cursor=None, limit=None):
        """A page of the (user, asset) account's journal, newest first:
        ``{"entries": [...], "next_cursor": str | None}``."""
        before, limit = schemas.load_page(cursor, limit)
        return self.books.history(schemas.load_user_id(user), schemas.load_asset(asset),
                                   before, limit)

    @rpc(expected_exceptions=ADMIN_VERB_ERRORS)
    def adjust_balance(self, user, asset, amount, ref, reason):
        """Admin correction: a signed amount to the user's available balance,
        against the exchange's fee revenue. Idempotent by ``ref``. Needs an
        admin's access token in the call's context data."""
        self.caller.admin()
        user = schemas.load_user_id(user)
        asset = schemas.load_asset(asset)
        result = self.books.adjust_balance(user, asset,
                                            schemas.load_amount(asset, amount, signed=True),
                                            schemas.load_ref(ref), schemas.load_text(reason, "reason"))
        return result

    @rpc
    def audit(self):
        """Every ledger invariant checked against the database: the findings,
        ``[]`` when clean."""
        return self.books.audit()

    @timer(interval=AUDIT_INTERVAL_S, eager=True)
    def periodic_audit(self):
        """The same audit, on a timer, from the audit checkpoint on (the RPC
        above reads the whole journal, on demand): its finding count and time are exported
        (``exchange_ledger_audit_findings``, ``..._timestamp_seconds``) and
        alerted on (monitoring/rules), so a broken invariant is not left
        until somebody asks."""
        started = time.monotonic()
        try:
            findings = self.books.audit_since_checkpoint()
        except Exception:
            self.metrics.audit_failed()
            log.exception("periodic ledger audit could not run")
            return
        # Its time follows what was written since the checkpoint, and what
        # the orders side reads: a slow audit shows here first.
        log.info("periodic ledger audit: %d findings in %.2f s", len(findings),
                 time.monotonic() - started)
        self.metrics.record_audit(len(findings))
        if findings:
            log.error("ledger audit: %d findings: %.2000s", len(findings), findings)
