"""What a test does when a server or program it needs is missing: it fails, saying what is
missing and how to provide it. A test that cannot reach its server proves nothing, so it
never passes quietly by skipping (``make test`` starts the servers it needs)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

ON_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Fail the test, saying what is missing and how to provide it."""
    pytest.fail(f"Missing: {reason}", pytrace=False)
