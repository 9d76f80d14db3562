"""The cyclic garbage collector of a gateway process.

A full collection stops the whole process: every push connection's frames
wait for it. At 500 push connections per process it took 53-59 ms of CPU
after ``gc.freeze()``, and on a busy machine up to half a second of wall
clock, two or three times in a 20 s push bench window: the largest pauses
left in session 8 (bench/README.md, "Live push").

A young collection promotes whatever is alive at that moment (the batches
and frames in flight); a full collection comes once the promoted objects
reach a quarter of the older heap (CPython's rule). What drives young
collections is the net growth of tracked objects, mostly garbage in cycles
(freed only by the collector). At CPython's first threshold (700) that is
every few ms under the bench; at YOUNG_THRESHOLD 70 times less often, so
70 times fewer in-flight objects are promoted and full collections become
that much rarer; a young collection of up to 50,000 objects takes a few ms.
"""
import gc

YOUNG_THRESHOLD = 50_000


def settle_heap() -> None:
    """Called once the app is built: what exists then (modules, clients, the
    app) lives as long as the process and is frozen, left out of every later
    collection; the young generation is collected at YOUNG_THRESHOLD."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
