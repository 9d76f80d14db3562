"""One coded-error vocabulary for every service and the gateway.

Every refusal a service raises over RPC is a ``CodedError``: a stable
``code`` (upper snake case, part of the public contract), a human
``message``, the ``field`` it concerns when the input was at fault, and an
``http_status`` class that the gateway's one mapping table starts from.

Subclasses are registered with Nameko's ``deserialize_to_instance``
(``@registered``), so a caller that imports the defining module gets the
typed exception back instead of a bare ``RemoteError``: every service's
refusals are (tests/integration/common/test_error_vocabulary_over_rpc.py). A
registered class is rebuilt from its ``args`` (``cls(*exc.args)``), so its
``args`` must be what its constructor takes. ``code_of`` reads the
code of anything a call can raise, including the older per-service errors
(``"CODE: message"`` as their text) and a ``RemoteError`` of a class the
caller did not import.

Pure: standard library and Nameko's registry only.
"""
from __future__ import annotations

import re
import sys

from nameko.exceptions import RemoteError, deserialize_to_instance

_CODE_PREFIX = re.compile(r"^([A-Z][A-Z0-9_]{1,63}): ?(.*)\Z", re.S)


class CodedError(Exception):
    """Base class: ``code`` stable, ``message`` for humans, ``field`` names the
    input at fault (or None). Over RPC it travels as ``exc_args = [code,
    message, field]`` (``[code, message]`` without a field) and its text is
    ``"CODE: message"``."""

    code = "ERROR"
    http_status = 400

    def __init__(self, code: str | None = None, message: str = "", field: str | None = None):
        code = code or type(self).code
        # No field, no third argument: Nameko stringifies args for the wire,
        # and a None sent would come back as the field "None".
        super().__init__(*((code, message) if field is None else (code, message, field)))
        self.code = code
        self.message = message or code
        self.field = field

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def as_dict(self) -> dict:
        out = {"code": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


def registered(cls):
    """Class decorator: a coded error that crosses RPC as itself."""
    return deserialize_to_instance(cls)


registered(CodedError)


@registered
class InvalidInput(CodedError):
    """The request is malformed: wrong type, bad grammar, out of bounds.
    ``field`` names the argument."""
    code = "INVALID_INPUT"
    http_status = 400


@registered
class Unauthenticated(CodedError):
    code = "UNAUTHENTICATED"
    http_status = 401


@registered
class Forbidden(CodedError):
    code = "FORBIDDEN"
    http_status = 403


@registered
class NotFound(CodedError):
    code = "NOT_FOUND"
    http_status = 404


@registered
class Conflict(CodedError):
    code = "CONFLICT"
    http_status = 409


@registered
class RequestExpired(CodedError):
    """The caller's deadline passed before the work started: nothing was done."""
    code = "REQUEST_EXPIRED"
    http_status = 504


@registered
class Unavailable(CodedError):
    """A dependency is down; the request may be retried."""
    code = "UNAVAILABLE"
    http_status = 503


# ---------------------------------------------------------------- shared refusals
# Refusals several services raise with one meaning: defined here once, raised
# as ``UnknownMarket(message=...)``, caught as this class whichever service
# raised it.


@registered
class UnknownMarket(NotFound):
    """No listed market has this symbol (in the registry's catalogue as the
    raising service follows it)."""
    code = "UNKNOWN_MARKET"


@registered
class UnknownAsset(NotFound):
    """No listed asset has this code."""
    code = "UNKNOWN_ASSET"


def code_of(exc: BaseException) -> str | None:
    """The stable code of an error raised by a service call, or None when it
    carries none (an unexpected failure)."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and _CODE_PREFIX.match(code + ": "):
        return code
    text = exc.value if isinstance(exc, RemoteError) else str(exc)
    match = _CODE_PREFIX.match(str(text or ""))
    return match.group(1) if match else None


def message_of(exc: BaseException) -> str:
    """The human part of a service error's text (after ``"CODE: "``)."""
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message:
        return message
    text = str(exc.value if isinstance(exc, RemoteError) else exc)
    match = _CODE_PREFIX.match(text)
    return match.group(2) if match else text


def run_command(run) -> int:
    """An operator command's exit status: ``run()``'s, or 1 with its refusal
    printed as ``refusal_line`` on stderr; a failure without a code raises
    (its traceback is the bug report)."""
    try:
        return run()
    except Exception as exc:
        line = refusal_line(exc)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 1


def refusal_line(exc: BaseException) -> str | None:
    """A refusal as an operator's command prints it, ``CODE: message``; None
    when ``exc`` carries no code (a failure: the command lets it raise).
    Keycloak refusing the password grant (python-keycloak's 401) is
    ``LOGIN_FAILED``."""
    code = code_of(exc)
    if code is None and getattr(exc, "response_code", None) == 401:
        code = "LOGIN_FAILED"
    return None if code is None else f"{code}: {message_of(exc)}"


def reason_of(exc: BaseException) -> str | None:
    """A refusal's inner reason where the service nests one (orders'
    ``ORDER_REJECTED: INSUFFICIENT_FUNDS: ...``)."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        return reason
    match = _CODE_PREFIX.match(message_of(exc))
    return match.group(1) if match else None
