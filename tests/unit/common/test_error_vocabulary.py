"""One error vocabulary: every service's refusals share the common coded
base, codes are unique per class, and docs/errors.md lists every code (the
table the gateway maps from). ``python tests/unit/common/test_error_vocabulary.py``
prints the table."""
import importlib
import inspect
import sys

from services.common.config import REPO_ROOT
from services.common.errors import CodedError

MODULES = ("services.common.errors", "services.registry.errors", "services.matching.errors",
           "services.orders.errors", "services.wallets.errors", "services.marketdata.errors")


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


def table() -> str:
    rows = ["| code | service | class | HTTP | meaning |", "|---|---|---|---|---|"]
    for service, cls in coded_classes():
        doc = " ".join((inspect.getdoc(cls) or "").split()) if cls.__doc__ else ""
        rows.append(f"| `{cls.code}` | {service} | `{cls.__name__}` | {cls.http_status} | {doc} |")
    for code, (cls, meaning) in users_codes().items():
        rows.append(f"| `{code}` | users | `{cls.__name__}` | {cls.http_status} | {meaning} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    print(table())
