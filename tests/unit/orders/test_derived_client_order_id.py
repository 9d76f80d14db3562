"""The client order id of an order sent in a batch without one is derived from
the request id and its position: a redelivered batch must find the orders its
first run placed, so the derivation is uuid5 of that name, exactly, whatever
the code that computes it."""
import random
import uuid

from services.orders.acceptance import derived_client_order_id


def test_it_is_the_uuid5_of_the_request_and_position():
    rng = random.Random(23)
    names = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(500)]
    names += ["", "x" * 200, "é-ü-\u4e2d"]
    for request_id in names:
        index = rng.randrange(0, 200)
        assert derived_client_order_id(request_id, index) == str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"orders.place_orders:{request_id}:{index}"))


def test_it_names_each_position_apart():
    ids = {derived_client_order_id("0f3c8a1e-1234-4bcd-9abc-0123456789ab", i) for i in range(200)}
    assert len(ids) == 200
