"""Run the gateway: `python -m gateway` (eventlet server, Socket.IO enabled)."""
import eventlet

eventlet.monkey_patch()

from gateway.app import create_app, socketio  # noqa: E402
from services.common.config import load_settings  # noqa: E402

if __name__ == "__main__":
    settings = load_settings()
    app = create_app(settings)
    socketio.run(app, host=settings.host, port=settings.int("EXCHANGE_GATEWAY_PORT"),
                 log_output=False)
