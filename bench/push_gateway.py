"""A bench gateway: ``python -m gateway`` plus a probe of its event loop.

A green thread sleeps 10 ms at a time and records how much later than that
it woke (the hub lag: what any green thread of the process waited for the
hub); each second it appends ``<unix time> <worst lag ms> <CPU s so far>``
to ``EXCHANGE_BENCH_HUB_LAG_FILE``. A lag with CPU spent in the same second
is the process busy; a lag without is the process waiting for a core (a
loaded machine) or blocked outside the hub. Used by bench/push_bench.py only.
"""
import eventlet

eventlet.monkey_patch()

import os  # noqa: E402
import runpy  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

TICK_S = 0.01


def probe(path: str) -> None:
    with open(path, "a") as out:
        worst, since = 0.0, time.monotonic()
        while True:
            before = time.monotonic()
            eventlet.sleep(TICK_S)
            worst = max(worst, time.monotonic() - before - TICK_S)
            if time.monotonic() - since >= 1.0:
                out.write(f"{time.time():.3f} {worst * 1000:.1f} {time.process_time():.3f}\n")
                out.flush()
                worst, since = 0.0, time.monotonic()


if __name__ == "__main__":
    eventlet.spawn_n(probe, os.environ["EXCHANGE_BENCH_HUB_LAG_FILE"])
    sys.argv = ["gateway"]
    runpy.run_module("gateway", run_name="__main__", alter_sys=True)
