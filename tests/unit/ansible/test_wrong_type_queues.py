"""Which queues the one-off upgrade step deletes (ansible/library/
exchange_stack.py, queues_of_the_wrong_type): only the durable queues our
code declares with the configured type, when they exist with another."""
import importlib.util

from tests.unit.ansible import kit

spec = importlib.util.spec_from_file_location("exchange_stack", kit.ANSIBLE_DIR / "library" / "exchange_stack.py")
exchange_stack = importlib.util.module_from_spec(spec)
spec.loader.exec_module(exchange_stack)

MARKET_UPDATED = "evt-registry-market_updated--matching.follow_market_status"


def listing(*rows):
    return "\n".join("\t".join(row) for row in rows) + "\n"


def test_a_classic_event_queue_in_a_quorum_deployment_is_of_the_wrong_type():
    found = exchange_stack.queues_of_the_wrong_type(listing(
        (MARKET_UPDATED, "classic", "true", "false", "false", "0", "3"),
        ("rpc-orders", "quorum", "true", "false", "", "2", "0"),
        ("matching.commands.ETH-USDT", "classic", "true", "false", "false", "0", "0"),
    ), "quorum")
    assert found == [{"name": MARKET_UPDATED, "type": "classic", "consumers": 0, "messages": 3}]


def test_reply_broadcast_and_auto_delete_queues_are_left_alone():
    found = exchange_stack.queues_of_the_wrong_type(listing(
        ("rpc.reply-standalone_rpc_proxy-a92eabbe", "classic", "true", "false", "false", "0", "0"),
        ("evt-matching-book_changed--marketdata.on_book-0f3e-4a1b", "classic", "false", "true", "true", "1", "0"),
        ("rpc-orders", "classic", "true", "true", "false", "1", "0"),
        ("registry.catalogue.wallets.f96a793cff25", "classic", "false", "true", "true", "1", "0"),
    ), "quorum")
    assert found == []


def test_a_local_stack_declaring_classic_finds_its_classic_queues_right():
    rows = ((MARKET_UPDATED, "classic", "true", "false", "false", "1", "0"),
            ("rpc-orders", "classic", "true", "false", "false", "1", "0"))
    assert exchange_stack.queues_of_the_wrong_type(listing(*rows), "classic") == []
    assert [q["name"] for q in exchange_stack.queues_of_the_wrong_type(listing(*rows), "quorum")] \
        == [MARKET_UPDATED, "rpc-orders"]
