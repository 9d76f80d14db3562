"""The matching service refuses a compiled engine built from other sources."""
import hashlib
import json

from services.matching.compiled import stale_compiled_engine


def package(tmp_path, stamp=True):
    for module in ("engine", "book"):
        (tmp_path / f"{module}.py").write_text(f"# {module}\n")
        (tmp_path / f"{module}.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    if stamp:
        (tmp_path / ".compiled.json").write_text(json.dumps({"sources": {
            name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
            for name in ("engine.py", "book.py")}}))
    return tmp_path


def test_a_build_of_the_current_sources_runs(tmp_path):
    assert stale_compiled_engine(package(tmp_path)) is None


def test_no_compiled_engine_runs_the_source(tmp_path):
    (tmp_path / "engine.py").write_text("# engine\n")
    assert stale_compiled_engine(tmp_path) is None


def test_a_source_changed_after_the_build_is_refused(tmp_path):
    directory = package(tmp_path)
    (directory / "book.py").write_text("# book, edited\n")
    assert "compiled book" in stale_compiled_engine(directory)


def test_extensions_without_a_stamp_are_refused(tmp_path):
    assert "compiled engine" in stale_compiled_engine(package(tmp_path, stamp=False))


def test_the_tree_under_test_is_current():
    from pathlib import Path

    import services.matching.compiled as compiled
    assert stale_compiled_engine(Path(compiled.__file__).resolve().parent) is None
