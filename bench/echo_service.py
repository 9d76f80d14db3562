"""An empty Nameko service: the RPC round trip the order benchmark compares to."""
from nameko.rpc import rpc

from services.common import json_codec, rpc_replies

rpc_replies.install()
json_codec.install()


class EchoService:
    name = "bench_echo"

    @rpc
    def echo(self, value):
        return value
