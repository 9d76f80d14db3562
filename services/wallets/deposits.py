"""Deposits: the users' deposit addresses, and chain deposits credited from
deposits clearing once per (asset, txid), from the asset's required
confirmations on."""
from __future__ import annotations

from services.wallets import addresses
from services.wallets.amounts import format_amount
from services.wallets.assets import Asset
from services.wallets.errors import DepositsDisabled, UnknownAddress
from services.wallets.ledger import (
    DEPOSIT_FIELDS,
    DEPOSITS_CLEARING,
    check_replay,
    deposit_entry,
    movement_result,
    system_owner,
)
from services.wallets.store import LedgerStore, iso, retry_on_conflict


class Deposits(LedgerStore):
    """deposit_address / credit_deposit."""

    def deposit_address(self, user: str, asset: Asset) -> dict:
        """The user's deposit address for ``asset``, created on first request.
        Refused (DepositsDisabled) while the registry has the asset's deposits disabled (a chain
        under maintenance): a trader shown an address would send to it.
        Deposits that arrive meanwhile are still credited (``credit_deposit``):
        the coins are on the exchange's address and belong to the trader."""
        if not asset.deposit_enabled:
            raise DepositsDisabled(f"deposits of {asset.code} are disabled")
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
