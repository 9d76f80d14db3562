"""The book a client rebuilds from the gateway's snapshot and diffs equals the
engine's book at the same sequence number: while orders flow, across a
kill -9 of a gateway process (the active bridge's), and across a kill -9 of
the matching engine (restored by ``python -m stack up``).

Orders are placed by fresh traders in ETH-USDT (the demo seeds only
BTC-USDT); other tests may trade there too, which only adds diffs: the
comparison is of the whole book at whatever sequence both sides reach.
"""
from __future__ import annotations

import random
import subprocess
import sys
import time
import uuid
from decimal import Decimal

import pytest

from services.common.config import REPO_ROOT, load_settings
from tests.e2e.browser.chromium import artifacts_dir
from tests.e2e.push import kit
from tests.e2e.push.mirror import BookMirror, engine_book

pytestmark = pytest.mark.timeout(600)

MARKET = "ETH-USDT"


@pytest.fixture(scope="module")
def settings():
    return load_settings()


@pytest.fixture(scope="module")
def traders(settings):
    funds = {"USDT": "200000", "ETH": "100"}
    return [kit.new_trader(settings, funds, prefix="book") for _ in range(2)]


def reference(settings) -> Decimal:
    with kit.rpc_proxy(settings) as rpc:
        depth = rpc.matching.get_depth(MARKET, 1)
    return Decimal(depth["reference_price"] or "2000")


def flow(settings, traders, count: int, seed: int) -> int:
    """``count`` limit orders near the reference price, about a third of them
    crossing, and some cancels; returns how many were accepted."""
    rng = random.Random(seed)
    centre = reference(settings)
    accepted, placed = 0, []
    with kit.rpc_proxy(settings) as rpc:
        for _ in range(count):
            trader = rng.choice(traders)
            side = rng.choice(["buy", "sell"])
            offset = Decimal(rng.randint(-30, 30)) / 100  # +-0.3 USDT: many cross
            price = (centre + offset).quantize(Decimal("0.01"))
            quantity = (Decimal(rng.randint(10, 500)) / 10000).quantize(Decimal("0.0001"))
            try:
                order = rpc.orders.place_order(trader.user_id, MARKET, side, "limit",
                                               quantity=str(quantity), price=str(price))
                placed.append((trader, order["order_id"]))
                accepted += 1
            except Exception:  # a refusal (band, funds) is not what is tested here
                continue
            if placed and rng.random() < 0.2:
                who, order_id = placed.pop(rng.randrange(len(placed)))
                try:
                    rpc.orders.cancel_order(who.user_id, order_id)
                except Exception:
                    pass
    return accepted


def assert_converges(settings, mirror: BookMirror, tries: int = 120):
    """The mirror must come to hold the engine's book. At the same seq they
    must be equal at once. The engine's seq also counts commands that change
    no level (a rejected or cancelled-before-resting order, another test's
    refusal), which send no diff: a mirror behind the engine by such commands
    holds the same book, so equal books with the mirror's seq not ahead of
    the engine's also converge. Returns the mirror's seq."""
    last = None
    with kit.rpc_proxy(settings) as rpc:
        for _ in range(tries):
            engine_seq, engine_levels = engine_book(rpc.matching.get_depth(MARKET, 1000))
            seq, levels = mirror.book()
            if seq == engine_seq:
                assert levels == engine_levels, f"books differ at seq {seq}"
                return seq
            if seq is not None and seq < engine_seq and levels == engine_levels:
                return seq
            last = (seq, engine_seq)
            time.sleep(0.25)
    raise AssertionError(f"mirror and engine never held the same book (seqs {last})")


def test_diffs_rebuild_the_engine_book_while_orders_flow(settings, traders):
    mirror = BookMirror(settings.gateway_url, MARKET).connect()
    try:
        assert flow(settings, traders, 60, seed=1) > 30
        seq = assert_converges(settings, mirror)
        assert mirror.diffs > 0 and seq > 0
    finally:
        mirror.close()


def test_diffs_survive_a_killed_gateway_process(settings, traders):
    """Two gateways of the test's own push cluster. The first started holds the
    active bridge; killing it hands the bridge to the second: a client on the
    second stays connected (re-syncing if it sees a gap), a client on the
    first reconnects to the second and starts from a new snapshot."""
    channel = f"test-{uuid.uuid4().hex[:8]}"
    logs = artifacts_dir("push")
    first = kit.GatewayProcess(kit.free_port(), channel, logs / f"{channel}-a.log").wait_ready()
    time.sleep(1.0)  # the first one's bridge is the active consumer
    second = kit.GatewayProcess(kit.free_port(), channel, logs / f"{channel}-b.log").wait_ready()
    stays = BookMirror(second.url, MARKET).connect()
    moves = BookMirror(first.url, MARKET).connect()
    try:
        flow(settings, traders, 25, seed=2)
        assert_converges(settings, stays)
        assert_converges(settings, moves)
        assert stays.diffs > 0, "the second gateway pushed nothing from the first's bridge"
        first.kill9()
        for _ in range(40):
            if not moves.connected:
                break
            time.sleep(0.25)
        moves.url = second.url
        moves.connect()
        flow(settings, traders, 25, seed=3)
        assert_converges(settings, stays)
        assert_converges(settings, moves)
        assert moves.snapshots >= 2
    finally:
        stays.close()
        moves.close()
        first.stop()
        second.stop()


def test_diffs_survive_a_killed_matching_engine(settings, traders):
    mirror = BookMirror(settings.gateway_url, MARKET).connect()
    pid_file = settings.run_dir / "pids" / "service-matching.pid"
    try:
        flow(settings, traders, 20, seed=4)
        before = assert_converges(settings, mirror)
        pid = int(pid_file.read_text().split()[0])
        subprocess.run(["kill", "-9", str(pid)], check=True)
        # The stack restarts what is down (bounded); the engine rebuilds its
        # book from the journal and goes on with the next seq.
        restarted = subprocess.run([sys.executable, "-m", "stack", "up"], cwd=REPO_ROOT,
                                   env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
                                   capture_output=True, timeout=300)
        assert restarted.returncode == 0, restarted.stderr.decode()[-2000:]
        flow(settings, traders, 20, seed=5)
        after = assert_converges(settings, mirror)
        assert after > before
    finally:
        mirror.close()
