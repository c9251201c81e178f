from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def console(request: HttpRequest) -> dict[str, Any]:
    """The signed-in member and company, for the console layout."""
    membership = getattr(request, "membership", None)
    if membership is None or not request.user.is_authenticated:
        return {}
    return {
        "membership": membership,
        "company": membership.company,
        "can_write": membership.can_write(),
    }
