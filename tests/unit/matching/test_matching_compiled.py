"""The compiled engine and its ``.py`` source: which one runs, and that both agree.

``scripts/build_engine.py`` (run by ``scripts/bootstrap.sh``) compiles
``engine.py`` and ``book.py`` with Cython next to the source and writes the
stamp ``services/matching/.compiled.json``. While that stamp exists (or
``EXCHANGE_ENGINE_COMPILED=1`` is set) the compiled modules must be the ones
imported, and built from the current source. The other tests of this folder
run against whatever ``services.matching.engine`` is; the tests here and the
``interpreted`` property tests run the ``.py`` source as well, loaded under
another name (``bench.engine_bench.load_interpreted_engine``).
"""

import hashlib
import json
import os
from importlib.machinery import EXTENSION_SUFFIXES

import pytest

import services.matching.book
import services.matching.engine
from bench.engine_bench import CONFIG, Workload, load_interpreted_engine

FOLDER = os.path.dirname(os.path.abspath(services.matching.book.__file__))
STAMP = os.path.join(FOLDER, ".compiled.json")
COMPILED_MODULES = (services.matching.engine, services.matching.book)
REBUILD = "rebuild with `.venv/bin/python scripts/build_engine.py` (bootstrap does it)"


def compiled_expected() -> bool:
    return os.path.exists(STAMP) or os.environ.get("EXCHANGE_ENGINE_COMPILED") == "1"


def test_compiled_engine_is_the_one_imported_when_built():
    if not compiled_expected():
        pytest.skip("engine not compiled (no build stamp): the .py source runs")
    for module in COMPILED_MODULES:
        assert module.__file__.endswith(EXTENSION_SUFFIXES[0]), (
            f"{module.__name__} imported from {module.__file__}, expected the compiled extension: {REBUILD}"
        )
    with open(STAMP) as f:
        stamp = json.load(f)
    assert stamp["extension_suffix"] == EXTENSION_SUFFIXES[0], f"built for another Python: {REBUILD}"
    for name, digest in stamp["sources"].items():
        with open(os.path.join(FOLDER, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, f"{name} changed since it was compiled: {REBUILD}"


def test_interpreted_engine_runs_the_source_with_the_same_models():
    interpreted = load_interpreted_engine()
    assert interpreted.__file__ == os.path.join(FOLDER, "engine.py")
    assert interpreted.OrderBook.__module__ == "interpreted_matching.book"
    assert os.path.basename(interpreted.compact.__code__.co_filename) == "book.py"
    # Same command classes: the engines dispatch on class identity.
    assert interpreted.PlaceOrder is services.matching.engine.PlaceOrder


def test_compiled_and_interpreted_engines_give_identical_events_on_the_bench_stream():
    """20,000 commands of the benchmark's flow (passive, cancels, sweeps, market orders)."""
    workload = Workload(seed=11)
    commands = workload.build_up(500) + workload.stream(20_000)
    compiled = services.matching.engine.MatchingEngine(CONFIG)
    interpreted = load_interpreted_engine().MatchingEngine(CONFIG)
    trades = 0
    for cmd in commands:
        events = compiled.apply(cmd)
        assert events == interpreted.apply(cmd), f"diverged on {cmd}"
        trades += sum(e[0] == "trade_executed" for e in events)
    assert trades > 1_000  # the stream did match
    assert compiled.snapshot() == interpreted.snapshot()
    compiled.book.check_invariants()


def test_snapshots_restore_across_implementations():
    workload = Workload(seed=12)
    head, tail = workload.build_up(300) + workload.stream(2_000), workload.stream(2_000)
    Compiled = services.matching.engine.MatchingEngine
    Interpreted = load_interpreted_engine().MatchingEngine
    compiled = Compiled(CONFIG)
    for cmd in head:
        compiled.apply(cmd)
    snapshot = json.loads(json.dumps(compiled.snapshot()))
    resumed = Interpreted.restore(snapshot)
    assert type(resumed) is Interpreted and resumed.snapshot() == compiled.snapshot()
    assert [resumed.apply(c) for c in tail] == [compiled.apply(c) for c in tail]
    back = Compiled.restore(json.loads(json.dumps(resumed.snapshot())))
    assert type(back) is Compiled and back.snapshot() == compiled.snapshot()
