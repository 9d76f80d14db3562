"""Every public RPC of every service, called with hostile values (issue 11).

The services run as real ``nameko run`` processes (as `make up` starts them)
on the TEST vhost, database and keyspace, so a call that blocks a service's
hub shows as that service's ``health`` not answering. For each generated
call (huge and tiny numbers, exponents, Unicode digits, control characters,
lone surrogates, megabyte strings, wrong types, missing and extra
arguments), the test asserts:

* the answer is a valid result or a coded error (a registered coded error,
  an older ``CODE: message`` error, or Nameko's own refusal of a call that
  does not fit the method's signature) -- never an unexpected exception
  (``ValueError``, ``DataError``, ``OverflowError``...);
* a refused call wrote nothing (row counts of the tables that hold money,
  orders, the journal and users, before and after);
* the service's ``health`` answers while the call runs. Issue 11 asks for
  "within 100 ms"; the house rule is that tests never assert on wall-clock
  time (a loaded 2-core machine would make such a bound flaky), so this is a
  liveness bound: health must answer within ``HEALTH_BOUND_S`` (2 s) while
  the fuzzed call is in flight. The freezes this guards against were 6 s,
  27 s and hours of a blocked hub, far beyond the bound.

Examples are bounded (``EXAMPLES_PER_METHOD`` for each of the ~58 methods)
so the five tests take a few minutes together.
"""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
import tempfile
import time

import eventlet
import psycopg
import pytest
import yaml
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from nameko.exceptions import RemoteError, RpcTimeout
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.config import REPO_ROOT
from services.common.errors import code_of
from services.marketdata.service import MarketDataService
from services.matching.service import MatchingService
from services.orders.service import OrdersService
from services.users.service import UsersService
from services.wallets.service import WalletsService

EXAMPLES_PER_METHOD = 5
HEALTH_BOUND_S = 2.0
CALL_TIMEOUT_S = 20.0
SERVICES = {cls.name: cls for cls in (OrdersService, WalletsService, MatchingService,
                                      MarketDataService, UsersService)}
# Nameko's own refusals of a call that does not fit the method.
NAMEKO_REFUSALS = {"IncorrectSignature", "MethodNotFound", "MalformedRequest"}
# Tables whose rows are money, orders, the engines' journal and users.
# users.audit_log is not among them: users records refusals there on purpose
# (a refused signed request or withdrawal is an event an operator audits).
WATCHED_TABLES = ("orders", "outbox", "matching_journal", "wallets.accounts",
                  "wallets.transactions", "wallets.deposit_addresses", "wallets.withdrawals",
                  "users.profiles", "users.signups", "users.api_keys")


def public_rpcs(cls) -> dict[str, list[str]]:
    """``{method: [parameter names]}`` of the class's RPC entrypoints."""
    found = {}
    for name, member in inspect.getmembers(cls, inspect.isfunction):
        entrypoints = getattr(member, "nameko_entrypoints", ())
        if any(type(e).__name__.endswith("Rpc") for e in entrypoints) and name != "health":
            found[name] = list(inspect.signature(member).parameters)[1:]
    return found


RPCS = [(service, method, params) for service, cls in SERVICES.items()
        for method, params in sorted(public_rpcs(cls).items())]

CONTROL = "".join(chr(c) for c in list(range(0, 32)) + [127, 0x85, 0x9f])
UNICODE_DIGITS = "٠١٢٣٤٥٦٧٨٩۰۱۲０１２３߀०१२৩"

hostile_text = st.one_of(
    st.sampled_from(["1e10000000", "1E5", "-1", "+1", "  0.01 ", "1_000", "NaN", "Infinity",
                     "1" * 40, "0x10", ".5", "5.", "", " ", "\x00", "a\x00b", "\ud800",
                     "FUZZ-USDT", "BTC", "0.01", "100", "fuzz-user", "00000000-0000-0000-0000-"
                     "000000000000", "ab" * 32, "read", "buy", "limit", "1m"]),
    st.text(alphabet=UNICODE_DIGITS, min_size=1, max_size=12),
    st.text(alphabet=CONTROL, min_size=1, max_size=8),
    st.text(max_size=40),
    st.integers(min_value=2, max_value=6).map(lambda n: "9" * 10 ** n),   # up to a megabyte
    st.integers(min_value=1, max_value=5000).map(lambda n: "1e" + "9" * n),
)
hostile_number = st.one_of(
    st.sampled_from([0, -1, 1, 2 ** 63, -2 ** 63, 10 ** 30, -10 ** 30, 10 ** 100]),
    st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
)
hostile_value = st.recursive(
    st.one_of(st.none(), hostile_text, hostile_number),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=6,
)


@st.composite
def arguments(draw, params: list[str]):
    """Arguments for a method with ``params``: all positional, all by
    keyword, one missing, or one unexpected extra."""
    shape = draw(st.sampled_from(["positional", "keywords", "missing", "extra"]))
    values = [draw(hostile_value) for _ in params]
    if shape == "positional":
        return values, {}
    if shape == "keywords":
        return [], dict(zip(params, values))
    if shape == "missing":
        return values[:max(0, len(values) - 1)], {}
    return values, {"unexpected_" + draw(st.sampled_from("abc")): draw(hostile_value)}


# ---------------------------------------------------------------- the services


@pytest.fixture(scope="module")
def service_processes(test_settings):
    """The five services as `nameko run` processes on the test namespaces."""
    workdir = tempfile.mkdtemp(prefix="rpc-fuzz-")
    config_path = os.path.join(workdir, "nameko.yaml")
    with open(config_path, "w") as out:
        yaml.safe_dump(test_settings.nameko_config(), out)
    env = {**os.environ, **test_settings.values, "PYTHONPATH": str(REPO_ROOT),
           "EXCHANGE_METRICS": "off", "EXCHANGE_LOG_DIR": workdir}
    processes = []
    logs = []
    try:
        for name in SERVICES:
            log = open(os.path.join(workdir, f"{name}.log"), "wb")
            logs.append(log)
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "nameko", "run", "--config", config_path,
                 f"services.{name}.service"], cwd=REPO_ROOT, env=env, stdout=log,
                stderr=subprocess.STDOUT))
        with ClusterRpcProxy(test_settings.nameko_config(), timeout=5) as rpc:
            for name in SERVICES:
                deadline = time.monotonic() + 90
                while True:
                    try:
                        getattr(rpc, name).health()
                        break
                    except Exception:
                        assert time.monotonic() < deadline, f"{name} did not start ({workdir})"
                        eventlet.sleep(0.5)
        yield test_settings.nameko_config()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()


def row_counts(conn) -> dict[str, int]:
    return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in WATCHED_TABLES}


def outcome(exc: BaseException) -> str | None:
    """The refusal's code, or None when the failure is not a coded one."""
    name = exc.exc_type if isinstance(exc, RemoteError) else type(exc).__name__
    if name in NAMEKO_REFUSALS:   # registered by Nameko: arrives as its own class
        return name
    return code_of(exc)


@pytest.mark.slow
@pytest.mark.parametrize("service", list(SERVICES))
def test_every_public_rpc_refuses_hostile_values_with_a_code_and_stays_live(
        service_processes, test_settings, service):
    methods = [(method, params) for name, method, params in RPCS if name == service]
    with psycopg.connect(test_settings.postgres_dsn(), autocommit=True) as conn, \
            ClusterRpcProxy(service_processes, timeout=CALL_TIMEOUT_S) as caller, \
            ClusterRpcProxy(service_processes, timeout=HEALTH_BOUND_S) as prober:
        for method, params in methods:
            @hsettings(max_examples=EXAMPLES_PER_METHOD, deadline=None, database=None,
                       suppress_health_check=list(HealthCheck))
            @given(call=arguments(params))
            def check(call):
                args, kwargs = call
                before = row_counts(conn)
                pending = eventlet.spawn(lambda: getattr(getattr(caller, service), method)(
                    *args, **kwargs))
                # Liveness while the call is in flight (see the module docstring).
                try:
                    status = getattr(prober, service).health()
                except RpcTimeout:
                    pytest.fail(f"{service}.health did not answer within {HEALTH_BOUND_S} s "
                                f"while {method} ran with {str(call)[:200]}")
                assert isinstance(status, dict)
                try:
                    pending.wait()
                except RpcTimeout:
                    pytest.fail(f"{service}.{method} did not answer within {CALL_TIMEOUT_S} s: "
                                f"{str(call)[:200]}")
                except Exception as exc:
                    code = outcome(exc)
                    assert code is not None, (
                        f"{service}.{method}{str(call)[:300]} raised an uncoded "
                        f"{type(exc).__name__}: {str(exc)[:300]}")
                    assert row_counts(conn) == before, \
                        f"{service}.{method} refused ({code}) but wrote rows"

            check()
