"""Many signed requests in flight at once are each answered, never with a 500.

The gateway's rate-limit counters use a pooled Memcached client; a pool
smaller than the requests in flight answered pymemcache's "Too many objects"
as HTTP 500 (-1000) to 64 concurrent callers (found by bench/order_path_bench.py).
The callers send from their own loopback address so the per-IP weight they
spend is theirs alone."""
import random

import eventlet
import requests
from requests_toolbelt.adapters.source import SourceAddressAdapter

import binance_testkit as kit

CALLERS = 96


def test_concurrent_signed_reads_are_all_served(settings):
    trader = kit.new_trader(settings, prefix="gw-conc")
    source = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"

    def account(_):
        session = requests.Session()
        session.mount("http://", SourceAddressAdapter((source, 0)))
        response = session.get(f"{settings.gateway_url}/api/v3/account?"
                               f"{kit.signed(trader, {})}",
                               headers={"X-MBX-APIKEY": trader.api_key}, timeout=60)
        return response.status_code, response.text[:200]

    answers = list(eventlet.GreenPool(CALLERS).imap(account, range(CALLERS)))
    failures = [answer for answer in answers if answer[0] != 200]
    assert not failures, failures[:3]
