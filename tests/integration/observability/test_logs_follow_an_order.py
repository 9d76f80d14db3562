"""One order's whole path in the JSON logs: placed through the gateway,
filtered by its id (`make logs ORDER=<id>`), shows the gateway, orders,
matching, wallets and marketdata lines, in time order (done-when of issue 16)."""
import subprocess
import sys
import uuid

import requests

from services.common.config import REPO_ROOT
from services.common.identity import backend_openid

from obs_helpers import funded_trader, wait_until

MARKET, PRICE, QUANTITY = "BTC-USDT", "30003", "0.001"
PATH = ["gateway", "orders", "matching", "wallets", "marketdata"]


def followed(order_id: str) -> list[str]:
    result = subprocess.run([sys.executable, "-m", "stack", "logs", "--order", order_id],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    return result.stdout.splitlines()


def process_of(line: str) -> str:
    return line.split()[1]


def test_an_orders_lines_from_every_process_in_time_order(settings, stack_rpc):
    username = f"obs-{uuid.uuid4().hex[:10]}"
    password = f"Obs-{uuid.uuid4().hex}"
    buyer = stack_rpc.users.sign_up({"username": username, "email": f"{username}@test.invalid",
                                     "password": password, "first_name": "Obs",
                                     "last_name": "Trader"})["user_id"]
    address = stack_rpc.wallets.deposit_address(buyer, "USDT")["address"]
    stack_rpc.wallets.credit_deposit("USDT", address, "100", "0x" + uuid.uuid4().hex * 2, 1000)
    seller = funded_trader(stack_rpc, {"BTC": "1"})
    stack_rpc.orders.place_order(seller, MARKET, "sell", "limit", quantity=QUANTITY, price=PRICE)
    token = backend_openid(settings).token(username, password)["access_token"]

    response = requests.post(f"{settings.gateway_url}/api/v1/orders", timeout=10,
                             headers={"Authorization": f"Bearer {token}"},
                             json={"market": MARKET, "side": "buy", "type": "limit",
                                   "quantity": QUANTITY, "price": PRICE})
    assert response.status_code == 201, response.text
    order_id = str(response.json()["order_id"])

    def whole_path():
        lines = followed(order_id)
        return lines if set(PATH) <= {process_of(line) for line in lines} else None
    lines = wait_until(whole_path, timeout=30, what=lambda: f"lines of every process for "
                       f"order {order_id}: {followed(order_id)}")

    stamps = [line.split()[0] for line in lines]
    assert stamps == sorted(stamps)
    first = {}
    for line in lines:
        first.setdefault(process_of(line), line)
    # The order's own path: received by the gateway, placed by orders, matched by the
    # engine, then settled and ingested (lines are stamped when each step began).
    order = [process_of(line) for line in lines]
    assert order.index("gateway") < order.index("orders") < order.index("matching") \
        < min(order.index("wallets"), order.index("marketdata")), order
    assert all(order_id in line for line in lines if process_of(line) in ("gateway", "matching"))


def test_an_unknown_order_has_no_lines():
    # An id no test names: the tests' "no such order" ids (999999999999 in
    # the partner tests) do appear in the orders' lines of their lookups.
    assert followed(str(uuid.uuid4().int % 10 ** 17 + 10 ** 17)) == []
