"""Every series an alert, a recording rule or a dashboard panel reads exists
in the running stack's Prometheus, with every label it filters or groups by.
A rule on a series nobody exports (a renamed metric, a label the exporter
does not set) evaluates to nothing, without an error, and can never fire:
promtool's unit tests feed it the series they assume, so only the live
stack can say. Also: every rule evaluates without an error, and none fires
on the stack at rest (thresholds that suit a 2-core machine)."""
import re

import pytest
import yaml

from gateway.ops import PANELS
from services.common.config import REPO_ROOT

from obs_helpers import wait_until

RULES = sorted((REPO_ROOT / "monitoring" / "rules").glob("*.yml"))
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def rules() -> list[dict]:
    return [rule for path in RULES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]]


def expressions() -> list[tuple[str, str]]:
    """``(what, PromQL)`` of every rule and dashboard panel."""
    return ([(rule.get("alert") or rule["record"], rule["expr"]) for rule in rules()]
            + [(f"panel {name}", query) for name, _, _, query in PANELS])


def selectors(expr: str) -> tuple[list[tuple[str, dict]], set[str]]:
    """The metric selectors ``(name, {label: (op, value)})`` of ``expr`` and
    the labels it groups or matches on. Enough PromQL for our rules: no
    string arguments outside matchers, no ``__name__`` selectors."""
    grouped = {label.strip() for _, labels in GROUPING.findall(expr)
               for label in labels.split(",") if label.strip()}
    expr = GROUPING.sub(" ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range and subquery durations
    found = []
    for match in SELECTOR.finditer(expr):
        name, matchers = match.group(1), match.group(2) or ""
        rest = expr[match.end():].lstrip()
        before = expr[:match.start()].rstrip()
        if name in KEYWORDS or rest.startswith("(") or before.endswith(("{", ",")) \
                or re.fullmatch(r"[0-9.e+-]+", name):
            continue
        found.append((name, {label: (op, value) for label, op, value in MATCHER.findall(matchers)}))
    return found, grouped


def test_the_selector_reader_reads_our_rules():
    found, grouped = selectors(
        'sum by (service, entrypoint) (rate(exchange_entrypoint_errors_total{code=~"A|B"}[1m]))'
        ' / on (instance) group_left max(up{job!="x"} == 0) and time() - foo > 300')
    assert found == [("exchange_entrypoint_errors_total", {"code": ("=~", "A|B")}),
                     ("up", {"job": ("!=", "x")}), ("foo", {})]
    assert grouped == {"service", "entrypoint", "instance"}


@pytest.fixture(scope="module")
def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def labels_of(prometheus, name: str) -> set[str] | None:
    """The label names of ``name``'s series over the last 15 minutes; None
    when it has none."""
    series = prometheus.query(f'last_over_time({{__name__="{name}"}}[15m])')
    if not series:
        return None
    return set().union(*(s["metric"] for s in series)) - {"__name__"}


@pytest.mark.parametrize("what,expr", expressions(), ids=[w for w, _ in expressions()])
def test_every_series_and_label_a_rule_or_panel_reads_exists(prometheus, recorded, what, expr):
    found, grouped = selectors(expr)
    assert found, f"{what}: no series read"
    problems, known = [], set()
    for name, matchers in found:
        if ":" in name:  # a recording rule's output: it must be one of ours
            if name not in recorded:
                problems.append(f"{name} is recorded by no rule")
            continue
        labels = labels_of(prometheus, name)
        if labels is None:
            problems.append(f"no series {name}")
            continue
        known |= labels
        # A matcher on a label the series lack matches "" (= and =~ then
        # select nothing, != and !~ everything): a silent defect either way.
        problems += [f"{name} has no label {label}" for label in matchers if label not in labels]
    if not problems and not any(":" in name for name, _ in found):
        problems += [f"grouped by {label}, which no series read has"
                     for label in grouped - known]
    assert problems == [], what


@pytest.mark.parametrize("what,expr", expressions(), ids=[w for w, _ in expressions()])
def test_every_rule_and_panel_evaluates(prometheus, what, expr):
    prometheus.query(expr)  # raises on a 400 (a PromQL error)


def test_every_rule_is_healthy_and_no_alert_fires_at_rest(prometheus):
    import requests
    groups = requests.get(f"{prometheus.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    unhealthy = {name: rule.get("lastError") for name, rule in loaded.items()
                 if rule["health"] == "err"}
    assert unhealthy == {}
    # Anything firing now must be a real outage, not a threshold the idle
    # stack crosses: give a flapping one a few evaluations to clear.
    wait_until(lambda: not prometheus.query('ALERTS{alertstate="firing"}'), timeout=30, every=5,
               what="no alert firing on the stack at rest")
