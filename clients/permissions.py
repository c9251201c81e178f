"""Console access: every page needs a member of a company; writes need owner or admin."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate, ParamSpec

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from clients.models import Membership

P = ParamSpec("P")

View = Callable[Concatenate[HttpRequest, P], HttpResponse]


class ConsoleRequest(HttpRequest):
    """An HttpRequest known to come from a member of a company."""

    membership: Membership


def console_view(
    *, write: bool = False
) -> Callable[[Callable[Concatenate[Any, P], HttpResponse]], View[P]]:
    """Require a signed-in company member; with ``write``, an owner or admin.

    ``write`` covers pages that exist only to change things (a read-only member
    gets 403 on them). Pages that show settings may be read by everyone and
    check ``can_write()`` themselves before saving.
    """

    def decorator(view: Callable[Concatenate[Any, P], HttpResponse]) -> View[P]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            membership = request.membership  # type: ignore[attr-defined]
            if membership is None:
                raise PermissionDenied("This account is not an admin of any company.")
            if write and not membership.can_write():
                raise PermissionDenied("Your role is read-only.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def require_write(request: ConsoleRequest) -> None:
    """Refuse a change from a read-only member."""
    if not request.membership.can_write():
        raise PermissionDenied("Your role is read-only.")
