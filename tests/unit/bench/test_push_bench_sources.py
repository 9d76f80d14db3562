"""The push bench's connections leave from loopback addresses of their own,
within what the gateway lets one client address hold and open
(gateway/connection_limits.py): its 1,000 connections from one address
were refused past the 100th under the first defaults (now 2,000 per
address), and its attempts stay off 127.0.0.1's count, which every local
client shares."""
from __future__ import annotations

import ipaddress
import random

from bench.push_bench import CONNECTIONS_PER_SOURCE, source_addresses
from gateway.connection_limits import ConnectionLimits
from services.common.config import load_settings


def test_a_source_carries_no_more_than_the_gateways_defaults_let_one_address():
    limits = ConnectionLimits.from_settings(load_settings())
    assert CONNECTIONS_PER_SOURCE <= limits.per_address
    assert CONNECTIONS_PER_SOURCE <= limits.attempts


def test_each_client_process_gets_its_own_loopback_addresses_enough_for_its_share():
    shares = [334, 333, 333]
    sources = source_addresses(shares, per_source=50, rng=random.Random(7))
    assert [len(own) for own in sources] == [7, 7, 7]
    every = [address for own in sources for address in own]
    assert len(set(every)) == len(every)
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network("127.0.0.0/8") for a in every)
    assert "127.0.0.1" not in every
