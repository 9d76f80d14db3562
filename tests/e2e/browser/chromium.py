"""One place for launching Debian's Chromium under Playwright (shared by every
browser test: the trader client's and the operators' dashboard's).

Playwright drives ``/usr/bin/chromium`` (Debian's ``chromium`` package,
installed by scripts/bootstrap.sh) through ``executable_path``: its own browser
download (``playwright install``) is never used. The flags keep the browser
offline apart from what the page asks for (no update checks, sync, field
trials, QUIC) and runnable as root without a display.

Playwright's sync API runs its own asyncio loop on greenlets and deadlocks in
an eventlet-patched interpreter, which is what pytest runs here
(tests/conftest.py patches): a test drives the browser in a child process
with ``run_child(module, *args)`` and asserts on its exit status.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

CHROMIUM = os.environ.get("EXCHANGE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
        "--no-default-browser-check"]
ARTIFACTS = Path(__file__).resolve().parents[3] / "run" / "artifacts"


def available() -> bool:
    return Path(CHROMIUM).exists()


@contextlib.contextmanager
def browser():
    """A Playwright ``Browser`` on a fresh, temporary profile,
    closed and removed on exit. Contexts made from it do not share cookies."""
    from playwright.sync_api import sync_playwright

    # launch() gives the browser a fresh temporary profile of its own (and
    # refuses --user-data-dir); HOME and the crash dumps go to a temporary
    # directory too, so nothing of a previous run is reused.
    home = tempfile.mkdtemp(prefix="exchange-chromium-")
    try:
        with sync_playwright() as p:
            instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS,
                                         env={**os.environ, "HOME": home})
            try:
                yield instance
            finally:
                instance.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def artifacts_dir(name: str) -> Path:
    """``run/artifacts/<name>/`` (git-ignored), created."""
    path = ARTIFACTS / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_child(module: str, *args: str, timeout: float = 240) -> str:
    """Run ``python -m module args...`` unpatched; its output, or an
    AssertionError carrying it when it exits non-zero."""
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[3]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(root)
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise AssertionError(f"{module} failed (exit {done.returncode}):\n{output[-6000:]}")
    return output
