"""Helpers for the observability tests: the stack's Prometheus and
Alertmanager HTTP APIs, and bounded waits. These tests look at the running
stack (`make up`), as an operator would: its services use the main vhost and
database, so the traders they create have names of their own (never the demo's)."""
import time
import uuid

import requests


def wait_until(check, timeout: float, every: float = 1.0, what="condition"):
    """``check()`` until it returns something truthy; bounded in time. ``what``
    (text, or a function giving it) names the condition in the failure."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            what = what() if callable(what) else what
            raise AssertionError(f"{what} not met within {timeout:.0f}s (last: {last!r})")
        time.sleep(every)


class Prometheus:
    def __init__(self, url: str):
        self.url = url

    def targets(self) -> list[dict]:
        response = requests.get(f"{self.url}/api/v1/targets", params={"state": "active"},
                                timeout=5)
        response.raise_for_status()
        return response.json()["data"]["activeTargets"]

    def query(self, expr: str) -> list[dict]:
        response = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        response.raise_for_status()
        return response.json()["data"]["result"]


class Alertmanager:
    def __init__(self, url: str):
        self.url = url

    def alerts(self, name: str, **labels) -> list[dict]:
        """Active alerts named ``name`` whose labels include ``labels``."""
        response = requests.get(f"{self.url}/api/v2/alerts", params={"active": "true"}, timeout=5)
        response.raise_for_status()
        return [a for a in response.json()
                if a["labels"].get("alertname") == name
                and all(a["labels"].get(k) == v for k, v in labels.items())
                and a["status"]["state"] == "active"]




def funded_trader(rpc, balances: dict[str, str]) -> str:
    """A trader of this test only (a fresh id), with wallet accounts and deposits."""
    user = str(uuid.uuid4())
    rpc.wallets.open_accounts(user)
    for asset, amount in balances.items():
        address = rpc.wallets.deposit_address(user, asset)["address"]
        txid = uuid.uuid4().hex * 2
        rpc.wallets.credit_deposit(asset, address, amount,
                                   txid if asset == "BTC" else "0x" + txid, 1000)
    return user
