"""Refuse to run a compiled engine older than its source.

scripts/build_engine.py compiles engine.py and book.py into extensions next
to them, and Python imports an extension in preference to the .py beside it.
After a source change without a rebuild (a `git pull`, an edit, a deploy that
skipped bootstrap), the process would silently run the old engine -- and a
standby or a replay would then disagree with the journal written by the new
one. The build's stamp records the sha256 of each source it compiled; the
service checks it before hosting an engine.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

STAMP = ".compiled.json"
MODULES = ("engine", "book")  # the hot path; models (values, conversions at the boundary) stays interpreted


def source_digests(package_dir: Path) -> dict[str, str]:
    """sha256 of each compiled module's source, as the build stamp records them."""
    return {f"{module}.py": hashlib.sha256((package_dir / f"{module}.py").read_bytes()).hexdigest()
            for module in MODULES}


def stale_compiled_engine(package_dir: Path) -> Optional[str]:
    """Why the compiled engine in ``package_dir`` must not run, or None when
    there is none or it was compiled from the current sources."""
    compiled = [m for m in MODULES if any(package_dir.glob(f"{m}.*.so"))]
    if not compiled:
        return None
    try:
        sources = json.loads((package_dir / STAMP).read_text())["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        sources = {}
    current = source_digests(package_dir)
    for module in compiled:
        if sources.get(f"{module}.py") != current[f"{module}.py"]:
            return (f"the compiled {module} in {package_dir} was not built from the current "
                    f"{module}.py: run scripts/build_engine.py (make up does)")
    return None


def require_current_engine() -> None:
    reason = stale_compiled_engine(Path(__file__).resolve().parent)
    if reason is not None:
        raise RuntimeError(reason)
