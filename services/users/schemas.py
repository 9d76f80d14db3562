"""Input schemas of the RPC API (pydantic) and the shapes it returns.

``load`` turns a validation failure into ``INVALID_REQUEST`` naming the field.
Keycloak stays the authority on passwords (the realm's policy) and on its own
username/e-mail rules; these schemas reject what is obviously wrong before a
network round trip.
"""
from __future__ import annotations

import re
import uuid
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.common import grammar
from services.users.apikeys import MAX_LABEL_LENGTH, PERMISSIONS
from services.users.errors import error

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{2,63}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")

Model = TypeVar("Model", bound=BaseModel)


# Latest API key expiry accepted: the end of year 9999, in ms (10**30 once
# overflowed on its way to the database).
MAX_EXPIRES_AT_MS = 253_402_300_799_999


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        """No text field (passwords included) carries control characters or
        lone surrogates (services.common.grammar): a NUL reached PostgreSQL."""
        if isinstance(value, str) and grammar.has_control_characters(value):
            raise ValueError("must not contain control characters")
        return value


class SignUpRequest(Strict):
    username: str = Field(description="3-64 chars: lowercase letters, digits, . _ @ -")
    email: str
    password: str = Field(min_length=1, max_length=128)
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    signup_id: uuid.UUID | None = Field(
        default=None, description="idempotency key chosen by the client; retrying with the "
                                  "same id returns the same outcome")

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        value = value.lower()
        if not _USERNAME.match(value):
            raise ValueError("3-64 characters: letters, digits, '.', '_', '@', '-'")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        value = value.lower()
        if len(value) > 254 or not _EMAIL.match(value):
            raise ValueError("not an e-mail address")
        return value


class CreateApiKeyRequest(Strict):
    label: str = Field(min_length=1, max_length=MAX_LABEL_LENGTH)
    permissions: list[str] = Field(default_factory=lambda: ["read"],
                                   description=f"subset of {list(PERMISSIONS)}; read is implied")
    ip_allowlist: list[str] | None = Field(default=None, description="IPs or CIDR networks")
    expires_at: int | None = Field(default=None, gt=0, le=MAX_EXPIRES_AT_MS, strict=True,
                                   description="ms since the epoch")


class ChangeApiKeyRequest(Strict):
    ip_allowlist: list[str] | None = Field(description="IPs or CIDR networks; null: any IP")


class StateChangeRequest(Strict):
    user_id: uuid.UUID
    reason: str = Field(min_length=1, max_length=500)


def load(model: type[Model], data: Any) -> Model:
    if isinstance(data, model):
        return data
    if not isinstance(data, dict):
        raise error("INVALID_REQUEST", f"expected an object for {model.__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors())
        raise error("INVALID_REQUEST", problems) from None


def parse_uuid(value: Any, code: str = "INVALID_REQUEST", what: str = "id") -> str:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise error(code, f"{what} must be a UUID") from None


def is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
        return True
    except (ValueError, TypeError, AttributeError):
        return False
