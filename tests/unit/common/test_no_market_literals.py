"""Issue 12: no market or asset is named in service code. Markets and assets
live in the registry (seed data: services/registry/migrations/002, the demo's
balances and book in stack/seed.py);
every service and the gateway load the catalogue. This scans the Python and
SQL of services/ and gateway/ for an asset code or a market symbol in code --
docstrings, comments and API documentation (``description=`` /
``examples=``) aside -- and fails naming each place."""
import ast
import re

from services.common.config import REPO_ROOT

ROOTS = ("services", "gateway")
# Numbered migrations are data and history (applied once, never edited): the
# registry's 002 is the seed of the demo's assets and markets; matching's 001
# seeded a table its 002 dropped when the registry took markets over.
SEED = re.compile(r"^services/[a-z_]+/migrations/")
ASSET = r"(?:BTC|ETH|USDT|USDC|SOL|XRP|DOGE|LTC|BNB)"
LITERAL = re.compile(rf"(?<![A-Za-z0-9_]){ASSET}(?![A-Za-z0-9_])"
                     rf"|(?<![A-Za-z0-9_])[A-Z0-9]{{2,12}}-{ASSET}(?![A-Za-z0-9_])")
DOCUMENTING = {"description", "examples", "help", "summary"}


def _python_literals(path):
    tree = ast.parse(path.read_text(), str(path))
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                skipped.add(id(body[0].value))
        if isinstance(node, ast.keyword) and node.arg in DOCUMENTING:
            skipped.update(id(n) for n in ast.walk(node.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in skipped and LITERAL.search(node.value):
            yield node.lineno, node.value


def _sql_literals(path):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("--", 1)[0]
        for text in re.findall(r"'([^']*)'", code):
            if LITERAL.search(text):
                yield number, text


def literals() -> list[str]:
    found = []
    for root in ROOTS:
        for path in sorted((REPO_ROOT / root).rglob("*")):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if SEED.match(relative) or "__pycache__" in relative:
                continue
            if path.suffix == ".py":
                found += [f"{relative}:{n}: {v!r}" for n, v in _python_literals(path)]
            elif path.suffix == ".sql":
                found += [f"{relative}:{n}: {v!r}" for n, v in _sql_literals(path)]
    return found


def test_no_market_or_asset_literal_in_service_code():
    assert literals() == []


def test_the_scan_finds_a_literal():
    assert LITERAL.search("fee in USDT") and LITERAL.search("BTC-USDT")
    assert LITERAL.search("SOL-USDT") and not LITERAL.search("USDTX")
    assert not LITERAL.search("bitcoin")
