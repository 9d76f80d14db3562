"""balances_changed cannot be lost by a crash: the ledger writes it to the
outbox in the settlement's own transaction, so a wallets process killed
(kill -9) after the commit and before the publish leaves the event in the
outbox, and the next relay publishes it.

"After the commit and before the publish" is made certain, not hoped for:
the test holds the wallets outbox relay's advisory lock (as a relay of
another zone would), so no relay can publish until it lets go."""
import os
import signal
import sys
import uuid
import zlib

import psycopg
import pytest
import yaml
from kombu import Connection, Queue
from nameko.events import event_handler
from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.config import REPO_ROOT
from stack.proc import Process
from tests.integration.orders.conftest import fund, wait_for
from tests.integration.registry_kit import throwaway_market

RECEIVED = []


class BalancesListener:
    name = f"balances_listener_{uuid.uuid4().hex[:8]}"

    @event_handler("wallets", "balances_changed")
    def on_balances_changed(self, payload):
        RECEIVED.append(payload)


@pytest.fixture
def wallets_process(nameko_config, test_settings, test_run_dir):
    run = test_run_dir / "crash-test"
    run.mkdir(parents=True, exist_ok=True)
    config_file = run / "nameko-balances.yaml"
    config_file.write_text(yaml.safe_dump({**nameko_config, "max_workers": 10}))
    env = {**test_settings.values, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    proc = Process(name="wallets-balances", argv=[
        sys.executable, "-m", "nameko", "run", "--config", str(config_file),
        "services.wallets.service"], log=run / "wallets-balances.log",
        pid_file=run / "wallets-balances.pid", env=env, cwd=REPO_ROOT)
    proc.start()
    yield proc
    proc.stop(timeout=10)


@pytest.fixture
def relay_lock(test_settings):
    """The wallets outbox relay's lock, held by the test until it lets go."""
    conn = psycopg.connect(test_settings.postgres_dsn(), autocommit=True)
    key = zlib.crc32(b"outbox:wallets")
    # A running relay holds the lock while it relays: wait until we get it.
    wait_for(lambda: conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0],
             timeout=30, what="the wallets relay lock")
    yield lambda: conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    conn.close()


def changed(user):
    return [c for payload in RECEIVED for c in payload["changes"] if c["user"] == user]


def test_balances_changed_of_a_settlement_survives_a_kill_9_before_its_publish(
        relay_lock, wallets_process, container_factory, nameko_config, test_settings):
    container_factory(BalancesListener, nameko_config).start()
    with throwaway_market(test_settings) as market, \
            ClusterRpcProxy(nameko_config, timeout=30) as rpc:
        wait_for(lambda: _up(rpc), timeout=90, what="wallets up")
        base = market.split("-")[0]
        seller = fund(rpc, {base: "1"}, bitcoin_chain=(base,))
        buyer = fund(rpc, {"USDT": "1000"})
        rpc.wallets.hold(seller, base, "1", f"kill-test:{market}:sell")
        rpc.wallets.hold(buyer, "USDT", "100", f"kill-test:{market}:buy")
        event_dispatcher(nameko_config)("matching", "trade_executed", {
            "market": market, "seq": 1, "trade_id": f"{market}-1", "price": "100",
            "quantity": "1", "quote_quantity": "100", "taker_side": "buy",
            "maker_order_id": 1, "maker_user_id": seller, "taker_order_id": 2,
            "taker_user_id": buyer, "executed_at": 1796400000000})
        wait_for(lambda: rpc.wallets.balance(buyer, "USDT")["locked"] == "0.000000",
                 timeout=30, what="the trade to settle")

    # Committed: the settlement's announcement waits in the outbox, unpublished.
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        waiting = conn.execute(
            "SELECT count(*) FROM outbox WHERE stream = 'wallets' AND payload::text LIKE %s "
            "AND payload::text LIKE %s", (f"%{seller}%", f"%{buyer}%")).fetchone()[0]
    assert waiting >= 1
    assert not changed(seller) and not changed(buyer)

    pid = wallets_process.running_pid()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: wallets_process.running_pid() is None, 10, "wallets to die")
    relay_lock()
    wallets_process.start()

    wait_for(lambda: {c["asset"] for c in changed(seller)} >= {base, "USDT"}
             and {c["asset"] for c in changed(buyer)} >= {base, "USDT"},
             timeout=60, what="balances_changed of the settlement after the restart")
    assert all(p.get("event_version") == 1 for p in RECEIVED)
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        Queue(f"evt-wallets-balances_changed--{BalancesListener.name}.on_balances_changed")(
            amqp.default_channel).delete()


def _up(rpc):
    try:
        return rpc.wallets.health()["database"] == "ok"
    except Exception:  # not consuming yet
        return False
