"""The native API under ``/api/v1``, described by its OpenAPI 3.1 document.

Routes are declared on one ``flask_openapi3.APIBlueprint``: each view's
annotated parameters (``path``, ``query``, ``body``: models from
``gateway.schemas``) are validated before the view runs, and the same
models, with the declared responses, make the document served at
``/api/v1/openapi.json``. The docs page (Swagger UI, its assets shipped in
the ``flask-openapi3-swagger`` wheel: no CDN) is at ``/api/v1/docs``.

The resources live in ``native_market`` (public market data),
``native_trading`` (orders, fills) and ``native_account`` (the caller,
balances, ledger, deposits, withdrawals, API keys).

Who is calling (``caller``): a person with a Keycloak access token
(``Authorization: Bearer``, ``gateway/tokens.py``), or a program with an API
key signing the request as on ``/api/v3`` (``X-MBX-APIKEY`` header,
``timestamp``/``recvWindow``/``signature`` in the query; the signed string
is the query without ``signature`` followed by the raw body). A key carries
permissions (read, trade, withdraw); a token may do everything its person
may, except what needs a one-time-password login (withdrawals), which the
users service decides.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import jsonify, redirect, request
from flask_openapi3 import APIBlueprint, Info, Tag
from flask_openapi3.models import APISpec, Components, Schema
from flask_openapi3.utils import get_model_schema
from pydantic import BaseModel, ValidationError

from gateway import auth, ratelimit, tokens
from gateway.errors import ApiError
from gateway.rpc import now_ms
from gateway.schemas import ErrorBody, ServerTime

PREFIX = "/api/v1"
VERSION = "1.0.0"

TAG_MARKET = Tag(name="market data", description="public: no credentials")
TAG_ACCOUNT = Tag(name="account", description="the caller, balances, ledger, deposits")
TAG_TRADING = Tag(name="trading", description="orders and fills")
TAG_WALLET = Tag(name="withdrawals", description="withdrawals need a one-time-password login "
                                                 "or a key with the withdraw permission")
TAG_KEYS = Tag(name="api keys", description="managed with an access token only")

# Every refusal has the same body; statuses vary (400, 401, 403, 404, 409,
# 413, 418, 429, 503, 504), so the document lists them under "default".
REFUSAL = {"default": ErrorBody}
PRIVATE = [{"bearer": []}, {"apiKey": []}]
TOKEN_ONLY = [{"bearer": []}]
# What an API key needs for an operation, stated in the document
# (``x-permission``; "token": keys are refused) and enforced by ``caller``.
NEEDS_READ = {"x-permission": "read"}
NEEDS_TRADE = {"x-permission": "trade"}
NEEDS_WITHDRAW = {"x-permission": "withdraw"}
NEEDS_TOKEN = {"x-permission": "token"}

blueprint = APIBlueprint("native", __name__, url_prefix=PREFIX, abp_responses=REFUSAL)
# Request weight per client IP on every request (docs included), as /api/v3.
ratelimit.install(blueprint)

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "a Keycloak access token of realm `exchange` (the web client's "
                              "login, or `python -m services.users.cli token USER`)"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-MBX-APIKEY",
               "description": "an API key; also send `timestamp` (ms), optionally "
                              "`recvWindow`, and last `signature` = hex HMAC-SHA256(secret, "
                              "query string without signature + raw body) in the query"},
}


# -- the caller ---------------------------------------------------------------

@dataclass(frozen=True)
class Caller:
    user_id: str
    auth: str                       # "token" or "api_key"
    permissions: tuple[str, ...]
    person: tokens.Person | None = None
    key_id: str | None = None


ALL_PERMISSIONS = ("read", "trade", "withdraw")


def caller(permission: str = "read", token_only: bool = False,
           new_order: bool | int = False) -> Caller:
    """Authenticate the request for an endpoint needing ``permission``
    (read, trade, withdraw); ``token_only``: API keys are refused. The
    caller's rate limits are charged (``new_order``: it places an order, or
    that many)."""
    authorization = request.headers.get("Authorization")
    api_key = request.headers.get("X-MBX-APIKEY")
    if authorization is not None:
        person = tokens.authenticate(tokens.bearer_token(authorization))
        # A person's requests count like a key's: weight and new orders.
        ratelimit.limiter().charge_key(f"person:{person.user_id}", ratelimit.view_weight(),
                                       new_order, account=person.user_id)
        return Caller(person.user_id, "token", ALL_PERMISSIONS, person=person)
    if api_key is not None:
        if token_only:
            raise ApiError(403, "TOKEN_REQUIRED", "this endpoint needs a person's access token, "
                           "not an API key", -2015)
        verified = verify_api_key(permission)
        ratelimit.limiter().charge_key(verified.key_id, ratelimit.view_weight(), new_order,
                                       account=verified.user_id)
        return Caller(verified.user_id, "api_key", verified.permissions, key_id=verified.key_id)
    raise tokens.unauthenticated("UNAUTHENTICATED", "send Authorization: Bearer <access token> "
                                 "or a signed API-key request")


def verify_api_key(permission: str) -> auth.Principal:
    """The key behind a signed request (gateway/auth.py, the scheme of /api/v3)."""
    return auth.authenticate(permission)


# -- validation failures --------------------------------------------------------

BODY_METHODS = ("POST", "PUT", "PATCH")  # every such operation here takes a JSON object


@blueprint.before_request
def each_query_parameter_once():
    """A query parameter named twice is refused, as a key named twice in a
    body is (gateway/jsonbody.py) and as a signed request's parameters are
    (-1101, gateway/auth.py): flask-openapi3 read the first value, so
    ``DELETE /orders?market=A&market=B`` cancelled A's orders only."""
    for name, values in request.args.lists():
        if len(values) > 1:
            raise ApiError(400, "INVALID_INPUT", f"the query parameter {name[:40]!r} appears "
                           "twice", -1101, "Duplicate values for a parameter detected.",
                           field=name[:40])


@blueprint.before_request
def body_is_one_json_object():
    """A body is a JSON object, parsed once (gateway/jsonbody.py's rules),
    before its model sees it; else 400 INVALID_INPUT saying what is wrong.

    flask-openapi3 reads a body that is a JSON *string* as JSON a second
    time, with pydantic's parser: past jsonbody.py, so a key named twice in
    it was taken (the last one winning) where the same object sent as an
    object is refused. A body that failed to parse (not JSON, a key named
    twice, nested too deeply) reached the model as nothing at all and was
    refused as "Input should be a valid dictionary", naming no reason."""
    if request.method not in BODY_METHODS:
        return
    if not request.is_json:
        raise ApiError(400, "INVALID_INPUT", "send the body as a JSON object with "
                       "Content-Type: application/json", -1100)
    # Cached: the model's read (and a batch's weight) take this very value.
    body = request.get_json(silent=True, cache=True)
    if body is None:
        raw = request.get_data(cache=True).strip()
        if not raw and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            # eventlet does not mark a chunked body as terminated, so
            # werkzeug reads it as empty (never past the size limit).
            raise ApiError(400, "INVALID_INPUT", "a chunked body is not read: send the JSON "
                           "object with a Content-Length", -1100)
        if not raw:
            raise ApiError(400, "INVALID_INPUT", "the body is empty: send a JSON object", -1100)
        if raw != b"null":
            try:
                request.json_module.loads(raw)
            except ValueError as exc:  # only a refusal's path parses twice
                raise ApiError(400, "INVALID_INPUT", f"the body is not valid JSON: {exc}",
                               -1100) from None
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_INPUT", "the body must be a JSON object", -1100)


def refuse_invalid(exc: ValidationError):
    """flask-openapi3's hook for a request that fails its model: 400 naming
    the first field at fault (the grammar's code when the grammar refused it)."""
    error = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in error.get("loc", ())) or None
    kind = error.get("type", "")
    code = kind if kind.isupper() else {"missing": "MISSING_FIELD",
                                        "extra_forbidden": "UNKNOWN_FIELD"}.get(kind,
                                                                                "INVALID_INPUT")
    message = str(error.get("msg"))
    if field and not message.startswith(field.rpartition(".")[2]):
        message = f"{field}: {message}"
    raise ApiError(400, code, message, -1100, field=field)


@blueprint.record_once
def _install(state):
    # flask-openapi3 reads these from the app; the gateway is a plain Flask app.
    state.app.validation_error_callback = refuse_invalid


def reply(model: BaseModel, status: int = 200):
    response = jsonify(model.model_dump(mode="json"))
    response.status_code = status
    return response


# -- the document and its docs page ------------------------------------------------

def openapi_document() -> dict:
    spec = APISpec(
        openapi="3.1.0",
        info=Info(title="Exchange native API", version=VERSION,
                  description="Markets, orders, balances and withdrawals of the exchange. "
                              "Decimals are strings, times epoch milliseconds, markets like "
                              "`BTC-USDT`. Refusals: `{\"error\": {\"code\", \"message\", "
                              "\"request_id\", \"field\"?}}`."),
        paths=blueprint.paths, tags=blueprint.tags)
    schemas = dict(blueprint.components_schemas)
    error_schema = get_model_schema(ErrorBody, mode="serialization")
    for name, value in error_schema.pop("$defs", {}).items():
        schemas[name] = Schema(**value)
    schemas["ErrorBody"] = Schema(**error_schema)
    spec.components = Components(schemas=schemas, securitySchemes=SECURITY_SCHEMES)
    document = spec.model_dump(mode="json", by_alias=True, exclude_unset=True, warnings=False)
    for path_item in document["paths"].values():
        for operation in path_item.values():
            default = operation.get("responses", {}).get("default")
            if default is not None:
                default["description"] = "a refusal (4xx) or a failure (5xx)"
    return document


def _swagger_blueprint():
    from flask_openapi3_swagger.plugins import RegisterPlugin
    # The page lives at /api/v1/docs/swagger; the document one level up.
    return RegisterPlugin.register(doc_url="../openapi.json")


blueprint.register_blueprint(_swagger_blueprint(), url_prefix="/docs")


@blueprint.get("/openapi.json", doc_ui=False)
def openapi_json():
    document = blueprint.__dict__.get("_document")
    if document is None:
        document = blueprint._document = openapi_document()
    return jsonify(document)


@blueprint.get("/docs", doc_ui=False)
def docs_page():
    return redirect(f"{PREFIX}/docs/swagger", code=302)


@blueprint.get("/time", tags=[TAG_MARKET], summary="The server's clock (epoch ms)",
               responses={200: ServerTime})
def server_time():
    return reply(ServerTime(server_time=now_ms()))


from gateway.api import native_account, native_market, native_trading  # noqa: E402,F401
