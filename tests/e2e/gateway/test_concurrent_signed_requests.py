"""Many signed requests in flight at once are each answered, never with a 500.

The gateway's rate-limit counters use a pooled Memcached client; a pool
smaller than the requests in flight answered pymemcache's "Too many objects"
as HTTP 500 (-1000) to 64 concurrent callers (found by bench/order_path_bench.py).
The callers send from their own loopback address so the per-IP weight they
spend is theirs alone."""
import eventlet

import binance_testkit as kit
from tests.e2e.loopback import own_address, session_from

CALLERS = 96


def test_concurrent_signed_reads_are_all_served(settings):
    trader = kit.new_trader(settings, prefix="gw-conc")
    source = own_address()

    def account(_):
        response = session_from(source).get(f"{settings.gateway_url}/api/v3/account?"
                               f"{kit.signed(trader, {})}",
                               headers={"X-MBX-APIKEY": trader.api_key}, timeout=60)
        return response.status_code, response.text[:200]

    answers = list(eventlet.GreenPool(CALLERS).imap(account, range(CALLERS)))
    failures = [answer for answer in answers if answer[0] != 200]
    assert not failures, failures[:3]
