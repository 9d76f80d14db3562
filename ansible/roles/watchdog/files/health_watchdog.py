"""Restart a program that runs but has stopped answering (issue 15).

supervisord restarts a process that dies; it cannot see one that is alive
and stuck. In the zone drills a RabbitMQ node stayed in "Starting broker..."
for 14 minutes after its pause_minority pause ended (session 8, run 2): the
Erlang VM ran, its AMQP listener never opened, and a restart of the node
healed it in 15 s. This checker, itself a supervisord program of the host,
asks each watched program's probe every CHECK_EVERY_S seconds and, when the
program has been RUNNING but unhealthy for its whole threshold, restarts it
through supervisord. Each later restart of the same program waits twice as
long (at most MAX_THRESHOLD_S), so a program that is only slow is not kept
from ever finishing its start.

    health_watchdog.py --socket SUPERVISOR_SOCK --watch NAME:PROBE:SECONDS ... [--every S]

PROBE is `server:<name>` (stack/servers.py's health probe of that server on
this host: an AMQP login for rabbitmq, a CQL query of system.local for
cassandra; settings from the EXCHANGE_* environment, as stack/ reads them)
or `http:<url>` (200 is healthy: Patroni's /liveness).
"""
from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
import xmlrpc.client
from dataclasses import dataclass

# A probe every 15 s: a hung node is found within a threshold plus 15 s; more
# often would only spend the shared CPU on AMQP logins and CQL sessions.
CHECK_EVERY_S = 15
# A slow program's later thresholds double up to 30 min.
MAX_THRESHOLD_S = 1800
# The loop ends after a day of checks and supervisord starts it again
# (autorestart): every loop of ours is bounded in count.
ROUNDS_SPAN_S = 24 * 3600
HTTP_TIMEOUT_S = 3


def say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} health_watchdog: {message}", flush=True)


@dataclass
class Watched:
    name: str
    probe: str
    threshold_s: float
    unhealthy_since: float | None = None
    restarts: int = 0

    @classmethod
    def parse(cls, text: str) -> "Watched":
        # The probe may hold colons (a URL): the name ends at the first, the seconds follow the last.
        name, _, rest = text.partition(":")
        probe, _, seconds = rest.rpartition(":")
        if not probe.startswith(("server:", "http:")) or not seconds.isdigit():
            raise SystemExit(f"--watch {text!r}: NAME:server:<name>:SECONDS or NAME:http:<url>:SECONDS")
        return cls(name, probe, float(seconds))


def healthy(probe: str) -> tuple[bool, str]:
    if probe.startswith("http:"):
        try:
            with urllib.request.urlopen(probe, timeout=HTTP_TIMEOUT_S) as answer:
                return answer.status == 200, f"HTTP {answer.status}"
        except (OSError, urllib.error.URLError) as problem:
            return False, f"{type(problem).__name__}: {problem}"[:200]
    target = probe.removeprefix("server:")
    from services.common.config import load_settings
    from stack.servers import SERVERS
    server = next((s for s in SERVERS if s.name == target), None)
    if server is None:
        return False, f"no server {target!r} in stack/servers.py"
    result = server.probe(load_settings())
    return result.up, result.detail[:200]


def supervisor(socket_path: str):
    from supervisor.xmlrpc import SupervisorTransport
    return xmlrpc.client.ServerProxy(
        "http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{socket_path}"))


def check(rpc, watched: Watched, now: float) -> None:
    try:
        state = rpc.supervisor.getProcessInfo(watched.name)["statename"]
    except (OSError, xmlrpc.client.Fault) as problem:
        say(f"{watched.name}: supervisord did not answer ({problem}); not judged")
        return
    if state != "RUNNING":
        # Stopped, starting or backing off: supervisord's own business.
        watched.unhealthy_since = None
        return
    up, detail = healthy(watched.probe)
    if up:
        if watched.unhealthy_since is not None:
            say(f"{watched.name}: healthy again after {now - watched.unhealthy_since:.0f} s")
        watched.unhealthy_since = None
        watched.restarts = 0
        return
    if watched.unhealthy_since is None:
        watched.unhealthy_since = now
        say(f"{watched.name}: running but not healthy ({detail})")
        return
    threshold = min(watched.threshold_s * 2 ** watched.restarts, MAX_THRESHOLD_S)
    if now - watched.unhealthy_since < threshold:
        return
    say(f"{watched.name}: running but not healthy for {now - watched.unhealthy_since:.0f} s "
        f"(threshold {threshold:.0f} s, last: {detail}): restarting it")
    try:
        rpc.supervisor.stopProcess(watched.name, True)
        rpc.supervisor.startProcess(watched.name, False)
    except (OSError, xmlrpc.client.Fault) as problem:
        say(f"{watched.name}: the restart failed ({problem}); tried again next round")
        return
    watched.restarts += 1
    watched.unhealthy_since = None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="supervisord's unix socket")
    parser.add_argument("--watch", action="append", required=True, help="NAME:PROBE:SECONDS")
    parser.add_argument("--every", type=float, default=CHECK_EVERY_S, help="seconds between rounds")
    args = parser.parse_args(argv)
    watched = [Watched.parse(text) for text in args.watch]
    rpc = supervisor(args.socket)
    say("watching " + ", ".join(f"{w.name} ({w.probe}, {w.threshold_s:.0f} s)" for w in watched))
    for _ in range(int(ROUNDS_SPAN_S // args.every)):
        for one in watched:
            check(rpc, one, time.monotonic())
        time.sleep(args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
