"""One place for launching Debian's Chromium under Playwright (shared by every
browser test: the trader client's and the operators' dashboard's).

Playwright drives ``/usr/bin/chromium`` (Debian's ``chromium`` package,
installed by scripts/bootstrap.sh) through ``executable_path``: its own browser
download (``playwright install``) is never used. The flags keep the browser
offline apart from what the page asks for (no update checks, sync, field
trials, QUIC) and runnable as root without a display.
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
