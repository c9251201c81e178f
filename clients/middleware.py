from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from clients.models import Membership


class MembershipMiddleware:
    """Attach the signed-in admin's membership (and so their company) to the request.

    ``request.membership`` is None for anonymous visitors and for accounts that
    belong to no company.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        membership = None
        if request.user.is_authenticated:
            membership = (
                Membership.objects.select_related("company").filter(user_id=request.user.pk).first()
            )
        request.membership = membership  # type: ignore[attr-defined]
        return self.get_response(request)
