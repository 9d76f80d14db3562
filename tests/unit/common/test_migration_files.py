"""The schema files as the runner reads them: numbered migrations hold tables
and data, each replaceable SQL function lives in one function file, and the
runner's order puts every function file after what it needs."""
import re

import pytest

from services.common.config import REPO_ROOT
from services.common.migrations import (
    Migration, MigrationError, dependency_order, read_functions, service_sql_migrations,
)

SERVICES = REPO_ROOT / "services"
DEFINES_FUNCTION = re.compile(r"\bCREATE\s+(OR\s+REPLACE\s+)?FUNCTION\b", re.I)
FUNCTION_NAME = re.compile(r"CREATE\s+OR\s+REPLACE\s+FUNCTION\s+(?:[a-z_]+\.)?([a-z_]+)\s*\(", re.I)


def function(component, name, *requires):
    lines = [f"-- requires: {needed}" for needed in requires]
    return Migration(component, None, name, "\n".join(lines + [f"SELECT '{name}'"]))


def test_no_numbered_migration_defines_a_function():
    """A function written into a migration is copied again at its next change
    (place_order_tx was in orders 003 and 005, apply_postings in wallets
    001, 004 and 005): functions live in functions/<name>.sql."""
    offenders = [str(path.relative_to(SERVICES))
                 for path in SERVICES.glob("*/migrations/*.sql")
                 if DEFINES_FUNCTION.search(path.read_text())]
    assert offenders == []


def test_each_function_file_replaces_the_function_it_is_named_after():
    files = sorted(SERVICES.glob("*/functions/*.sql"))
    assert files, "no function files found"
    for path in files:
        names = FUNCTION_NAME.findall(path.read_text())
        assert names == [path.stem], f"{path.relative_to(SERVICES)} defines {names}"


def test_every_migration_runs_before_every_function_file():
    order = service_sql_migrations()
    kinds = [m.is_function for m in order]
    assert kinds == sorted(kinds), "a function file before a migration"
    migrations = [(m.component, m.version) for m in order if not m.is_function]
    assert migrations == sorted(migrations)


def test_function_files_come_after_the_files_they_require():
    order = service_sql_migrations()
    position = {(m.component, m.name): i for i, m in enumerate(order) if m.is_function}
    required = [(m, needed) for m in order if m.is_function for needed in m.requires]
    assert required, "no function file declares what it requires"
    for item, needed in required:
        assert needed in position, f"{item.label} requires {needed}, which is no function file"
        assert position[needed] < position[(item.component, item.name)]


def test_dependency_order_puts_requirements_first_whatever_the_names():
    files = [function("w", "a_hold", "w/z_move"), function("w", "z_move", "w/m_format"),
             function("w", "m_format")]
    assert [f.name for f in dependency_order(files)] == ["m_format", "z_move", "a_hold"]


def test_a_cycle_of_requirements_is_refused():
    with pytest.raises(MigrationError, match="cycle"):
        dependency_order([function("w", "a", "w/b"), function("w", "b", "w/a")])


def test_a_requirement_that_is_no_function_file_is_refused():
    with pytest.raises(MigrationError, match="requires wallets/nothing"):
        dependency_order([function("orders", "place", "wallets/nothing")])


def test_a_function_file_name_must_be_a_function_name(tmp_path):
    (tmp_path / "Bad-Name.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="function_name"):
        read_functions("w", tmp_path)


def test_a_rewritten_migration_names_the_checksums_it_ran_as():
    text = "-- ran as sha256:" + "a" * 64 + "\n-- ran as sha256:" + "b" * 64 + "\nSELECT 1"
    assert Migration("w", 1, "x", text).ran_as == {"a" * 64, "b" * 64}
    assert Migration("w", 1, "x", "SELECT 1").ran_as == frozenset()
