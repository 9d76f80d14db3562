"""Compile the matching engine's pure core with Cython, in place.

    .venv/bin/python scripts/build_engine.py           # build if a source changed; silent no-op otherwise
    .venv/bin/python scripts/build_engine.py --check   # exit 0 if the extensions are up to date, 1 if not
    .venv/bin/python scripts/build_engine.py --force   # rebuild
    .venv/bin/python scripts/build_engine.py --clean   # remove the extensions: the .py source runs

``services/matching/engine.py`` and ``book.py`` stay the only source: Cython
compiles them unchanged (pure Python mode) into extension modules next to
them (``engine.cpython-311-x86_64-linux-gnu.so``), which Python imports in
preference to the ``.py``. Without the extensions the same source runs
interpreted, with the same events (tests/unit/matching checks both).

``annotation_typing`` is off: the annotations stay documentation, no variable
becomes a C type, so ints stay unbounded Python ints and every operation keeps
Python's semantics; the speed comes from compiled bytecode dispatch, locals
and closure cells, and direct calls of builtins.

A stamp (``STAMP``) records the sha256 of each source, the Cython and Python
versions and the directives; the build is skipped while it matches and the
extensions exist. A failed build removes the extensions and the stamp, so a
stale extension never outlives its source, and exits non-zero.
"""

import argparse
import json
import os
import shutil
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# The service checks the stamp with the same digests before hosting an engine.
from services.matching.compiled import MODULES, STAMP as STAMP_NAME, source_digests  # noqa: E402

PACKAGE = "services.matching"
DIRECTIVES = {"language_level": 3, "annotation_typing": False}
BUILD_DIR = os.path.join(ROOT, "build", "engine")
STAMP = os.path.join(ROOT, *PACKAGE.split("."), STAMP_NAME)
CYTHON_VERSION = "3.3.1"  # keep equal to requirements.txt


def source(module: str) -> str:
    return os.path.join(ROOT, *PACKAGE.split("."), module + ".py")


def extension(module: str) -> str:
    return os.path.join(ROOT, *PACKAGE.split("."), module + EXTENSION_SUFFIXES[0])


def wanted_stamp() -> dict:
    sources = source_digests(Path(ROOT, *PACKAGE.split(".")))
    return {
        "compiler": f"Cython {CYTHON_VERSION}",
        "python": sys.version.split()[0],
        "extension_suffix": EXTENSION_SUFFIXES[0],
        "directives": DIRECTIVES,
        "sources": sources,
    }


def up_to_date() -> bool:
    try:
        with open(STAMP) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return False
    return stamp == wanted_stamp() and all(os.path.exists(extension(m)) for m in MODULES)


def clean() -> None:
    for path in [STAMP] + [extension(m) for m in MODULES]:
        if os.path.exists(path):
            os.remove(path)
    shutil.rmtree(BUILD_DIR, ignore_errors=True)


def build() -> None:
    import Cython
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    if Cython.__version__ != CYTHON_VERSION:
        raise SystemExit(f"Cython {Cython.__version__} installed, {CYTHON_VERSION} expected: pip install -r requirements.txt")
    clean()
    extensions = [Extension(f"{PACKAGE}.{m}", [os.path.relpath(source(m), ROOT)]) for m in MODULES]
    os.chdir(ROOT)
    modules = cythonize(extensions, build_dir=os.path.relpath(BUILD_DIR, ROOT), compiler_directives=DIRECTIVES, force=True)
    dist = Distribution({"ext_modules": modules, "script_name": "build_engine.py"})
    dist.script_args = [
        "build_ext", "--inplace",
        "--build-temp", os.path.join(BUILD_DIR, "temp"),
        "--build-lib", os.path.join(BUILD_DIR, "lib"),
    ]
    dist.parse_command_line()
    dist.run_commands()
    missing = [extension(m) for m in MODULES if not os.path.exists(extension(m))]
    if missing:
        raise RuntimeError(f"build finished without {missing}")
    with open(STAMP, "w") as f:
        json.dump(wanted_stamp(), f, indent=1, sort_keys=True)
        f.write("\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 0 if up to date, 1 if a build is needed")
    mode.add_argument("--force", action="store_true", help="rebuild even if up to date")
    mode.add_argument("--clean", action="store_true", help="remove the compiled extensions and the stamp")
    args = parser.parse_args(argv)
    if args.clean:
        clean()
        return 0
    if args.check:
        return 0 if up_to_date() else 1
    if up_to_date() and not args.force:
        return 0
    try:
        build()
    except BaseException:
        clean()  # never leave an extension that does not match its source
        raise
    print(f"compiled {', '.join(os.path.relpath(extension(m), ROOT) for m in MODULES)} with Cython {CYTHON_VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
