"""Zone-loss drill for the RabbitMQ cluster of the three zones: a quorum
queue whose leader is in the zone that is cut keeps taking confirmed
messages through the other zones' nodes within 30 s, loses none, and the cut
node resumes (pause_minority) when its zone comes back.

Needs `scripts/zones.sh up` and the three-zones play with the rabbitmq tag
(docs/operations.md); skipped otherwise.
"""
import socket
import subprocess
import time
import uuid
from pathlib import Path

import amqp
import pytest

from services.common.config import DEFAULT_TEST_SUFFIX, REPO_ROOT, load_settings

ADDRESSES = {"zone-a": "169.254.100.11", "zone-b": "169.254.100.12", "zone-c": "169.254.100.13"}
SCRIPT = REPO_ROOT / "scripts" / "zones.sh"
SETTINGS = load_settings()
PORT = SETTINGS.int("EXCHANGE_RABBITMQ_PORT")
# The zones' own test vhost: their prepare step makes the default suffix's,
# not the one a runner's EXCHANGE_TEST_SUFFIX names (that is the dev stack's).
VHOST = SETTINGS["EXCHANGE_RABBITMQ_VHOST"] + DEFAULT_TEST_SUFFIX
RESUME_LIMIT_S = 30


def answers(address: str) -> bool:
    try:
        socket.create_connection((address, PORT), timeout=1).close()
        return True
    except OSError:
        return False


pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not all(Path(f"/run/netns/{z}").exists() for z in ADDRESSES)
    or not all(answers(a) for a in ADDRESSES.values()),
    reason="three-zones RabbitMQ not deployed")]


def connect(zone: str) -> amqp.Connection:
    conn = amqp.Connection(host=f"{ADDRESSES[zone]}:{PORT}", userid=SETTINGS["EXCHANGE_RABBITMQ_USER"],
                           password=SETTINGS["EXCHANGE_RABBITMQ_PASSWORD"], virtual_host=VHOST,
                           connect_timeout=3, read_timeout=5, write_timeout=5, confirm_publish=True)
    conn.connect()
    return conn


def zones(*args):
    subprocess.run(["bash", str(SCRIPT), *args], check=True, capture_output=True, timeout=60)


def test_a_quorum_queue_led_from_a_lost_zone_keeps_every_confirmed_message():
    queue = f"zone_drill_{uuid.uuid4().hex[:8]}"
    # Declared through zone-c's node: the queue's leader starts there.
    with connect("zone-c") as conn:
        conn.channel().queue_declare(queue, durable=True, auto_delete=False,
                                     arguments={"x-queue-type": "quorum"})
    confirmed = []
    with connect("zone-a") as conn:
        channel = conn.channel()
        for n in range(50):
            channel.basic_publish(amqp.Message(str(n), delivery_mode=2), routing_key=queue)
            confirmed.append(n)
    cut_at = time.monotonic()
    zones("cut", "zone-c")
    try:
        resumed_after = None
        errors = []
        n = 50
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(confirmed) < 100:
            try:
                with connect("zone-a") as conn:
                    channel = conn.channel()
                    while len(confirmed) < 100:
                        channel.basic_publish(amqp.Message(str(n), delivery_mode=2), routing_key=queue)
                        confirmed.append(n)
                        if resumed_after is None:
                            resumed_after = time.monotonic() - cut_at
                        n += 1
            except Exception as problem:  # noqa: BLE001 - an unconfirmed publish is retried as a new message
                errors.append(f"{time.monotonic() - cut_at:.1f}s {type(problem).__name__}: {problem}")
                n += 1
                time.sleep(0.5)
        assert resumed_after is not None, errors[-5:]
        print(f"\nqueue leader's zone cut: confirmed publishes resumed after {resumed_after:.1f} s")
        assert resumed_after < RESUME_LIMIT_S
        assert len(confirmed) == 100
    finally:
        zones("heal", "zone-c")

    # Every confirmed message is there, read through zone-b's node.
    received = set()
    with connect("zone-b") as conn:
        channel = conn.channel()
        for _ in range(500):
            message = channel.basic_get(queue, no_ack=True)
            if message is None:
                break
            received.add(int(message.body))
        channel.queue_delete(queue)
    assert set(confirmed) <= received

    # zone-c's node resumes after the heal (bounded wait).
    for _ in range(60):
        try:
            connect("zone-c").close()
            break
        except Exception:  # noqa: BLE001
            time.sleep(2)
    else:
        pytest.fail("zone-c's RabbitMQ node did not resume after heal")
