"""RPC replies published without publisher confirms.

Nameko publishes every RPC reply with confirms: one more broker round trip
per call, which the profile of the order flow put at about a quarter of a
service process's time. A confirm on a reply buys nothing: the reply goes to
the caller's transient reply queue, and a reply lost with a broker failure
shows up at the caller as a timeout either way, exactly as a service process
dying after its commit would. Callers that must not lose the outcome of a
call make it idempotent (orders: ``client_order_id``) and ask again.

``Responder.publisher_cls`` is Nameko's hook for the reply publisher; every
service module calls ``install()`` at import (as does the benchmark's echo
service, so the baseline it is compared to gets the same).
"""
from nameko.amqp.publish import Publisher
from nameko.rpc import Responder


class ReplyPublisher(Publisher):
    use_confirms = False


def install() -> None:
    Responder.publisher_cls = ReplyPublisher
