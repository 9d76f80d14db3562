"""Shared bits of the users integration tests (importable from test modules)."""
import time
import uuid

import eventlet
from nameko.events import event_handler

from users_keycloak import PASSWORD

RPC_TIMEOUT = 60


def new_username(prefix="ut") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def signup_request(username=None, **overrides) -> dict:
    username = username or new_username()
    request = {"username": username, "email": f"{username}@example.test", "password": PASSWORD,
               "first_name": "Test", "last_name": "User"}
    request.update(overrides)
    return request


class UsersEvents:
    """Collects the users service's events (start it before the action)."""
    name = "users_events_listener"
    received = []

    @classmethod
    def find(cls, name: str, **match) -> list[dict]:
        """Payloads of ``name`` events whose fields equal ``match`` (the
        outbox may also deliver events of earlier runs)."""
        return [payload for event, payload in cls.received
                if event == name and all(payload.get(k) == v for k, v in match.items())]

    @classmethod
    def wait_for(cls, name: str, timeout: float = 30, **match) -> dict:
        deadline = time.monotonic() + timeout
        while not (found := cls.find(name, **match)):
            assert time.monotonic() < deadline, f"no {name} event matching {match}"
            eventlet.sleep(0.05)
        return found[0]

    @event_handler("users", "user_signed_up")
    def on_signed_up(self, payload):
        UsersEvents.received.append(("user_signed_up", payload))
        return payload

    @event_handler("users", "signup_rolled_back")
    def on_rolled_back(self, payload):
        UsersEvents.received.append(("signup_rolled_back", payload))
        return payload

    @event_handler("users", "user_frozen")
    def on_frozen(self, payload):
        UsersEvents.received.append(("user_frozen", payload))
        return payload

    @event_handler("users", "api_key_revoked")
    def on_key_revoked(self, payload):
        UsersEvents.received.append(("api_key_revoked", payload))
        return payload

    @event_handler("users", "api_key_changed")
    def on_key_changed(self, payload):
        UsersEvents.received.append(("api_key_changed", payload))
        return payload
