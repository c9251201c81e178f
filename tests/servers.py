"""What a test does when a server or program it needs is missing.

On a developer's machine it skips with the reason; under CI=true it fails, because there
a missing server means the run proved less than it claims.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

ON_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip locally, fail on CI, saying what is missing and how to provide it."""
    if not ON_CI:
        pytest.skip(reason)
    pytest.fail(f"Needed on CI: {reason}", pytrace=False)
