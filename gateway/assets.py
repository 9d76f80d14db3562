"""The gateway's copy of the listed assets: precision, chain, deposit
confirmations and the withdrawal rules (fee held on top of the amount,
minimum, daily limit per user over a rolling 24 hours).

Source: the registry's catalogue (``services/common/catalogue.py``
``AssetInfo``), the one home of these facts; wallets applies them, this
module only publishes them (``GET /api/v1/assets``) so a trader knows the fee
and minimum before withdrawing. Cached per process for ``markets.TTL_S``, a
failed reload keeps serving the previous copy. Unlike markets there is no
stand-in source (matching knows no fees): while the registry has never been
read, the caller is refused 503 UNAVAILABLE.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from gateway.errors import ApiError
from gateway.markets import TTL_S, Reloaded

log = logging.getLogger(__name__)


def registry_assets(settings) -> list:
    """The registry's assets (``AssetInfo``), read through its SQL function in
    an OS thread (psycopg's wait would block the eventlet hub)."""
    from eventlet import tpool
    from services.common import catalogue as registry
    return list(tpool.execute(registry.load_from_settings, settings).assets().values())


class Assets:
    """The listed assets by symbol, cached; ``load`` returns ``AssetInfo``s."""

    def __init__(self, load: Callable[[], list], ttl_s: float = TTL_S,
                 clock: Callable[[], float] = time.monotonic):
        self._by_symbol: dict = {}
        self._copy = Reloaded(load, self._index, "assets", ttl_s, clock)

    def _index(self, found: list) -> None:
        self._by_symbol = {a.symbol: a for a in found}

    def _refresh(self) -> None:
        try:
            self._copy.refresh()
        except Exception:
            log.warning("the registry's assets could not be read", exc_info=True)
            raise ApiError(503, "UNAVAILABLE", "the asset list is unavailable: "
                           "try again in a moment", -1001) from None

    def all(self) -> list:
        """Every listed asset, by symbol."""
        self._refresh()
        return sorted(self._by_symbol.values(), key=lambda a: a.symbol)

    def get(self, symbol: str):
        """The asset, or None when it is not listed."""
        self._refresh()
        return self._by_symbol.get(symbol)


def assets(app=None) -> Assets:
    """The app's asset list, created on first use."""
    from flask import current_app
    app = app or current_app
    found = app.extensions.get("asset_list")
    if found is None:
        settings = app.config["SETTINGS"]
        found = app.extensions["asset_list"] = Assets(lambda: registry_assets(settings))
    return found
