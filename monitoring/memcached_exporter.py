"""A small Prometheus exporter for Memcached: ``stats`` read at each scrape.

Debian bookworm packages no memcached exporter, so the stack runs this one
(stack/monitoring.py). Series follow the upstream memcached_exporter's names
where they overlap (``memcached_up``, ``memcached_commands_total``...).

    python monitoring/memcached_exporter.py --listen 127.0.0.1:19150 --memcached 127.0.0.1:31211
"""
from __future__ import annotations

import argparse
import socket
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

TIMEOUT = 2.0


def read_stats(host: str, port: int) -> dict[str, str]:
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.sendall(b"stats\r\n")
        data = b""
        deadline = time.monotonic() + TIMEOUT
        while not data.endswith(b"END\r\n"):
            if time.monotonic() > deadline:
                raise TimeoutError("memcached stats did not end")
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("memcached closed the connection")
            data += chunk
    stats = {}
    for line in data.decode().splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "STAT":
            stats[parts[1]] = parts[2]
    return stats


def families(stats: dict[str, str] | None):
    up = GaugeMetricFamily("memcached_up", "1 when the last stats request answered.")
    up.add_metric([], 1 if stats else 0)
    yield up
    if not stats:
        return
    commands = CounterMetricFamily("memcached_commands", "Commands by command and status.",
                                   labels=["command", "status"])
    for command in ("get", "delete", "incr", "decr", "touch"):
        for status in ("hits", "misses"):
            key = f"{command}_{status}"
            if key in stats:
                commands.add_metric([command, status[:-1] if status == "hits" else "miss"],
                                    float(stats[key]))
    if "cmd_set" in stats:
        commands.add_metric(["set", "hit"], float(stats["cmd_set"]))
    yield commands
    for key, name, help_text, kind in (
            ("curr_connections", "memcached_current_connections", "Open connections.", "g"),
            ("curr_items", "memcached_current_items", "Items stored.", "g"),
            ("bytes", "memcached_current_bytes", "Bytes used by items.", "g"),
            ("limit_maxbytes", "memcached_limit_bytes", "Memory limit.", "g"),
            ("evictions", "memcached_items_evicted", "Items evicted to make room.", "c"),
            ("rejected_connections", "memcached_connections_rejected",
             "Connections refused at the connection limit.", "c"),
            ("uptime", "memcached_uptime_seconds", "Seconds since memcached started.", "g")):
        if key in stats:
            family = (GaugeMetricFamily if kind == "g" else CounterMetricFamily)(name, help_text)
            family.add_metric([], float(stats[key]))
            yield family


class MemcachedCollector:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port

    def collect(self):
        try:
            stats = read_stats(self.host, self.port)
        except OSError:
            stats = None
        yield from families(stats)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # one line per scrape is noise
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True, help="host:port to serve /metrics on")
    parser.add_argument("--memcached", required=True, help="host:port of memcached")
    args = parser.parse_args()
    listen_host, listen_port = args.listen.rsplit(":", 1)
    mc_host, mc_port = args.memcached.rsplit(":", 1)
    registry = CollectorRegistry()
    registry.register(MemcachedCollector(mc_host, int(mc_port)))
    server = make_server(listen_host, int(listen_port), make_wsgi_app(registry),
                         handler_class=QuietHandler)
    server.serve_forever()


if __name__ == "__main__":
    main()
