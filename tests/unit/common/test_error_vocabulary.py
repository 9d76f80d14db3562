"""One error vocabulary: every service's refusals share the common coded
base, codes are unique per class, and docs/errors.md lists every code (the
table the gateway maps from). ``python tests/unit/common/test_error_vocabulary.py``
prints the table."""
import importlib
import inspect
import sys

from nameko.exceptions import deserialize, get_module_path, registry, serialize

from services.common.config import REPO_ROOT
from services.common.errors import CodedError, InvalidInput, UnknownAsset, UnknownMarket, code_of

MODULES = ("services.common.errors", "services.registry.errors", "services.matching.errors",
           "services.orders.errors", "services.wallets.errors", "services.marketdata.errors",
           "services.users.errors")


def coded_classes():
    for name in MODULES:
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if inspect.isclass(cls) and issubclass(cls, Exception) \
                    and cls.__module__ == module.__name__:
                yield name.split(".")[1], cls


def users_codes():
    from services.users.errors import CODES
    return {code: (cls, meaning) for code, (cls, meaning) in CODES.items()}


def test_every_service_error_is_a_coded_error_with_a_code():
    for service, cls in coded_classes():
        assert issubclass(cls, CodedError), f"{service}: {cls.__name__} is not a CodedError"
        assert isinstance(cls.code, str) and cls.code.isupper(), cls


def test_a_coded_error_reads_as_its_code_and_message():
    from services.orders.errors import UnknownMarket
    from services.wallets.errors import InsufficientFunds
    for error in (UnknownMarket("X-Y"), InsufficientFunds("short by 1")):
        assert str(error).startswith(f"{error.code}: ") and error.message in str(error)


def test_docs_errors_md_lists_every_code():
    text = (REPO_ROOT / "docs" / "errors.md").read_text()
    missing = sorted({f"`{cls.code}`" for _, cls in coded_classes()} |
                     {f"`{code}`" for code in users_codes()})
    missing = [code for code in missing if code not in text]
    assert not missing, f"docs/errors.md lacks {missing}"


def sample(cls) -> CodedError:
    """An instance of ``cls`` built as its raise sites build it."""
    parameters = list(inspect.signature(cls.__init__).parameters)[1:]
    if parameters[:2] == ["code", "message"]:
        return cls(message="a refusal") if cls.__module__ == "services.common.errors" or \
            cls.__module__ == "services.registry.errors" else cls("SOME_CODE", "a refusal")
    if parameters == ["reason", "message"]:
        return cls("INSUFFICIENT_FUNDS", "INSUFFICIENT_FUNDS: short by 1")
    if parameters == ["message", "field"]:
        return cls("not a number", "price")
    return cls("a refusal")


def test_every_service_error_is_registered_and_crosses_rpc_as_itself():
    """Nameko rebuilds a registered class from its args: a caller gets the
    same class back, with the same code, text, field and reason."""
    for service, cls in coded_classes():
        assert get_module_path(cls) in registry, f"{service}: {cls.__name__} is not registered"
        error = sample(cls)
        received = deserialize(serialize(error))
        assert type(received) is cls, (service, cls, received)
        assert (received.code, str(received), received.field, getattr(received, "reason", None)) \
            == (error.code, str(error), error.field, getattr(error, "reason", None)), cls


def test_a_refusal_without_a_field_comes_back_without_one():
    """Nameko stringifies args: a None field used to come back as "None"."""
    received = deserialize(serialize(InvalidInput("INVALID_NUMBER", "not a number")))
    assert received.field is None and "field" not in received.as_dict()


def test_unknown_market_and_asset_are_defined_once():
    """Every class with these codes is the common one (or, in orders, a
    subclass of it), so ``except UnknownMarket`` catches any service's."""
    for service, cls in coded_classes():
        if cls.code == UnknownMarket.code:
            assert issubclass(cls, UnknownMarket), f"{service}: {cls.__name__}"
        if cls.code == UnknownAsset.code:
            assert issubclass(cls, UnknownAsset), f"{service}: {cls.__name__}"


def test_orders_rejection_names_its_reason_once():
    from services.orders.errors import OrderRejected
    error = OrderRejected("INSUFFICIENT_FUNDS", "INSUFFICIENT_FUNDS: hold order:7: short")
    assert str(error) == "ORDER_REJECTED: INSUFFICIENT_FUNDS: hold order:7: short"
    assert error.reason == "INSUFFICIENT_FUNDS" and code_of(error) == "ORDER_REJECTED"


def test_every_coded_refusal_is_an_expected_exception_of_every_rpc():
    """An UPSTREAM_TIMEOUT (common Unavailable) raised in an orders worker is
    logged as expected, not as a bug, though orders declares OrdersError."""
    from services.common.deadlines import rpc
    from services.common.errors import Unavailable
    from services.orders.errors import OrdersError

    class Service:
        name = "s"

        @rpc(expected_exceptions=OrdersError)
        def verb(self):
            pass

    [entrypoint] = Service.verb.nameko_entrypoints
    assert isinstance(Unavailable("UPSTREAM_TIMEOUT", "late"), entrypoint.expected_exceptions)
    assert isinstance(OrdersError("x"), entrypoint.expected_exceptions)
    assert not isinstance(ValueError(), entrypoint.expected_exceptions)


def table() -> str:
    rows = ["| code | service | class | HTTP | meaning |", "|---|---|---|---|---|"]
    for service, cls in coded_classes():
        if service == "users" and cls.code == "USERS_ERROR" and cls.__name__ != "UsersError":
            continue  # its instances carry the codes: the users rows below
        doc = " ".join((inspect.getdoc(cls) or "").split()) if cls.__doc__ else ""
        rows.append(f"| `{cls.code}` | {service} | `{cls.__name__}` | {cls.http_status} | {doc} |")
    for code, (cls, meaning) in users_codes().items():
        rows.append(f"| `{code}` | users | `{cls.__name__}` | {cls.http_status} | {meaning} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    print(table())
