"""Stop the wallets service while orders trade: the service-down and
settlement-lag alerts reach Alertmanager; `make up` restarts wallets, the
backlog settles and both alerts resolve (done-when of issue 16).

The wallets process is stopped with SIGSTOP (hung, as a deadlocked process
would be) rather than ended: an ended process would be started again by any
`make up` run meanwhile, a stopped one keeps its pid. To restart it, the test
kills it and runs what `make up` runs.

Bounded: alerts fire within ~45 s (scrapes and rules every 5 s, `for:` 15 s
and 10 s) and resolve within ~60 s of the restart."""
import os
import signal
import subprocess
import sys
import uuid
from decimal import Decimal

import pytest

from services.common.config import REPO_ROOT
from stack import apps as app_defs

from obs_helpers import funded_trader, wait_until

MARKET, PRICE, QUANTITY, TRADES = "BTC-USDT", "30000", "0.001", 3


def wallets_process(settings):
    return next(app for app in app_defs.apps(settings) if app.name == "service:wallets").process


def make_up() -> subprocess.CompletedProcess:
    """What `make up` runs after bootstrap: start whatever is down."""
    return subprocess.run([sys.executable, "-m", "stack", "up"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_wallets_down_while_trading_alerts_then_resolves_after_make_up(
        settings, stack_rpc, prometheus, alertmanager):
    seller = funded_trader(stack_rpc, {"BTC": "1"})
    buyer = funded_trader(stack_rpc, {"USDT": "1000"})
    # An earlier test may have restarted wallets: start from no alert about it.
    wait_until(lambda: not alertmanager.alerts("ServiceDown", service="wallets")
               and not alertmanager.alerts("SettlementLag"),
               timeout=90, every=2, what="no wallets alert before the test")

    process = wallets_process(settings)
    hung = process.running_pid()
    assert hung is not None, "wallets must run (make up) before this test"
    os.kill(hung, signal.SIGSTOP)
    try:
        run = uuid.uuid4().hex[:8]
        for n in range(TRADES):  # each pair trades at once: nothing else rests at 30000
            stack_rpc.orders.place_order(seller, MARKET, "sell", "limit", quantity=QUANTITY,
                                         price=PRICE, client_order_id=f"obs-{run}-s{n}")
            stack_rpc.orders.place_order(buyer, MARKET, "buy", "limit", quantity=QUANTITY,
                                         price=PRICE, client_order_id=f"obs-{run}-b{n}")
        wait_until(lambda: prometheus.query(f"exchange_settlement_unsettled_trades >= {TRADES}"),
                   timeout=45, what="unsettled trades counted")
        wait_until(lambda: alertmanager.alerts("ServiceDown", service="wallets"),
                   timeout=90, what="ServiceDown{service=wallets} in Alertmanager")
        fired = wait_until(lambda: alertmanager.alerts("SettlementLag"),
                           timeout=90, what="SettlementLag in Alertmanager")
        assert fired[0]["labels"]["severity"] == "page"
        assert fired[0]["annotations"]["runbook_url"] == "docs/operations.md#settlementlag"
    finally:
        os.killpg(hung, signal.SIGKILL)
        wait_until(lambda: process.running_pid() is None, timeout=10, what="wallets ended")
        result = make_up()
    restarted = process.running_pid()
    assert restarted not in (None, hung), result.stdout[-2000:] + result.stderr[-2000:]

    wait_until(lambda: prometheus.query("exchange_settlement_unsettled_trades == 0"),
               timeout=60, what="the backlog settled")
    wait_until(lambda: not alertmanager.alerts("ServiceDown", service="wallets"),
               timeout=90, what="ServiceDown resolved")
    wait_until(lambda: not alertmanager.alerts("SettlementLag"),
               timeout=90, what="SettlementLag resolved")
    # Settled after the restart: the buyer holds the bought BTC (less the taker fee).
    btc = stack_rpc.wallets.balances(buyer)["balances"]["BTC"]
    assert 0 < Decimal(btc["available"]) <= TRADES * Decimal(QUANTITY)
