"""HTTP clients that send from a loopback address of their own.

The gateway's rate limits are per client IP (6,000 weight a minute, then 429,
then a 60 s ban for a client that ignores its 429s). Every test sends from
127.0.0.1 by default, so one test that spends much weight could get
127.0.0.1 banned and fail the tests that run after it: that happened in CI on
a faster machine than ours, where the schemathesis fuzz test spent its
weight in less time. A test that sends many requests therefore sends from
its own address in 127.0.0.0/8 (all of it is the loopback interface), and a
client that is not testing the limits themselves honours 429 as a partner's
bot should: it waits the ``Retry-After`` the gateway gave and asks again."""
from __future__ import annotations

import random
import time

import requests
from requests_toolbelt.adapters.source import SourceAddressAdapter


def own_address() -> str:
    """A random loopback address other than 127.0.0.1 (one per caller)."""
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


def session_from(address: str) -> requests.Session:
    """A requests session whose connections leave from ``address``."""
    session = requests.Session()
    session.mount("http://", SourceAddressAdapter((address, 0)))
    return session


class PoliteSession(requests.Session):
    """Sends from ``address`` and waits out a 429 (its ``Retry-After``), at
    most ``max_waits`` times per request and ``max_wait_s`` in all; the 429
    is returned when the bound is spent, never hidden."""

    def __init__(self, address: str, max_waits: int = 3, max_wait_s: float = 130.0):
        super().__init__()
        self.mount("http://", SourceAddressAdapter((address, 0)))
        self.max_waits = max_waits
        self.max_wait_s = max_wait_s
        self.waited_s = 0.0

    def request(self, method, url, *args, **kwargs):
        response = super().request(method, url, *args, **kwargs)
        for _ in range(self.max_waits):
            if response.status_code != 429:
                break
            pause = float(response.headers.get("Retry-After", "1"))
            if self.waited_s + pause > self.max_wait_s:
                break
            time.sleep(pause)
            self.waited_s += pause
            response = super().request(method, url, *args, **kwargs)
        return response
