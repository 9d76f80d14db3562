"""RPC entrypoints that know which request they serve.

Nameko acks an RPC request only after its reply is sent, so when a process
dies between committing a call's effect and replying, the broker redelivers
the request to another process and the call runs a second time. A call that
creates something (``orders.place_order``) must recognise that second run.

``request_rpc`` is Nameko's ``rpc`` entrypoint that also puts the request's
AMQP correlation id -- unique per call, the same on every redelivery of it --
into the worker's context data; ``RequestId`` hands it to the service. It
refuses expired requests as ``services.common.deadlines.rpc`` does.
"""
from nameko.contextdata import ContextDataProvider

from services.common.deadlines import DeadlineRpc

REQUEST_ID_CONTEXT_KEY = "request_id"


class RequestRpc(DeadlineRpc):
    def unpack_message_headers(self, message):
        data = super().unpack_message_headers(message)
        # The message's own id, not a header: headers travel on to the calls
        # this worker makes, so a caller's request id could arrive as one.
        data[REQUEST_ID_CONTEXT_KEY] = message.properties.get("correlation_id")
        return data


request_rpc = RequestRpc.decorator


class RequestId(ContextDataProvider):
    context_key = REQUEST_ID_CONTEXT_KEY
