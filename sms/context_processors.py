from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def dev_outbox(request: HttpRequest) -> dict[str, bool]:
    """Whether the development outbox page exists (DEBUG or the demo), for the nav link."""
    return {"dev_outbox": bool(settings.DEBUG or settings.BLINK_DEMO)}
