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

import gc  # noqa: E402
import os  # noqa: E402
import runpy  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

TICK_S = 0.01


# The cyclic garbage collector's pauses (it stops the whole process, hub
# included): the longest of the current second (wall clock: on a loaded
# machine it includes waits for a core), the full collections, and the CPU
# the longest full collection took (not bent by the load).
collector = {"started": 0.0, "started_cpu": 0.0, "worst": 0.0, "full": 0, "full_cpu": 0.0,
             "young": 0, "full_found": 0}


def on_collection(phase: str, info: dict) -> None:
    if phase == "start":
        collector["started"] = time.perf_counter()
        collector["started_cpu"] = time.process_time()
        return
    collector["worst"] = max(collector["worst"], time.perf_counter() - collector["started"])
    if info.get("generation") != 2:
        collector["young"] += 1
        return
    collector["full"] += 1
    collector["full_found"] += info.get("collected", 0)
    collector["full_cpu"] = max(collector["full_cpu"],
                                time.process_time() - collector["started_cpu"])


# The market bridge's pushes (gateway/bridge.py push_batches: a batch's
# frames written to every connection of the process, without yielding): the
# longest of the current second, wall clock and CPU. A push whose CPU is
# near the hub lag is the process's own work holding the hub; a long wall
# clock with little CPU is the process waiting for a core in the middle.
pushes = {"worst": 0.0, "worst_cpu": 0.0}


def timed(push_batches):
    def timed_push_batches(self):
        started, started_cpu = time.perf_counter(), time.process_time()
        try:
            return push_batches(self)
        finally:
            pushes["worst"] = max(pushes["worst"], time.perf_counter() - started)
            pushes["worst_cpu"] = max(pushes["worst_cpu"], time.process_time() - started_cpu)
    return timed_push_batches


def probe(path: str) -> None:
    """Each line: unix time, worst hub lag (ms), process CPU so far (s),
    longest collector pause of the second (ms), full collections so far, the
    CPU of the longest full collection so far (ms), young collections so
    far, unreachable objects the full collections found so far (garbage in
    cycles: none means they only walked the heap), the longest push of the
    second (ms) and the CPU of the most costly one (ms)."""
    gc.callbacks.append(on_collection)
    with open(path, "a") as out:
        worst, since = 0.0, time.monotonic()
        while True:
            before = time.monotonic()
            eventlet.sleep(TICK_S)
            worst = max(worst, time.monotonic() - before - TICK_S)
            if time.monotonic() - since >= 1.0:
                out.write(f"{time.time():.3f} {worst * 1000:.1f} {time.process_time():.3f} "
                          f"{collector['worst'] * 1000:.1f} {collector['full']} "
                          f"{collector['full_cpu'] * 1000:.1f} {collector['young']} "
                          f"{collector['full_found']} {pushes['worst'] * 1000:.1f} "
                          f"{pushes['worst_cpu'] * 1000:.1f}\n")
                out.flush()
                worst, since = 0.0, time.monotonic()
                collector["worst"] = 0.0
                pushes["worst"] = pushes["worst_cpu"] = 0.0


if __name__ == "__main__":
    from gateway import bridge as push_bridge
    push_bridge.Bridge.push_batches = timed(push_bridge.Bridge.push_batches)
    eventlet.spawn_n(probe, os.environ["EXCHANGE_BENCH_HUB_LAG_FILE"])
    sys.argv = ["gateway"]
    runpy.run_module("gateway", run_name="__main__", alter_sys=True)
