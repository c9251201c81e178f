"""Chromium through Playwright against Django's live server.

The browser is Debian's /usr/bin/chromium; Playwright never downloads one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.servers import unavailable

CHROMIUM = Path("/usr/bin/chromium")

# Playwright's sync API runs an event loop in the test thread, so Django would
# refuse the ORM calls the tests and fixtures make between browser steps.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not CHROMIUM.exists():
        unavailable(f"The browser tests need Chromium at {CHROMIUM}: apt-get install chromium.")
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }
