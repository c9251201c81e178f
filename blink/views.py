"""Console pages on Blink's side, sign-in, and the health check."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordChangeForm
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from blink import selectors
from blink.audit import Actor, audit_record
from blink.forms import AuditFilterForm
from blink.models import WorkerHeartbeat
from clients.permissions import ConsoleRequest, console_view

AUDIT_PAGE_SIZE = 50
# A worker that has not beaten for this long is reported as missing.
HEARTBEAT_STALE_SECONDS = 120


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        membership = getattr(self.request.user, "membership", None)
        if membership is not None:
            audit_record(company=membership.company, actor=Actor.from_request(self.request),
                         action="console.sign_in", target=self.request.user.get_username())
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "registration/password_change.html"

    def form_valid(self, form: PasswordChangeForm) -> HttpResponse:
        response = super().form_valid(form)
        membership = getattr(self.request.user, "membership", None)
        if membership is not None:
            audit_record(company=membership.company, actor=Actor.from_request(self.request),
                         action="console.password_change",
                         target=self.request.user.get_username())
        messages.success(self.request, "Your password was changed.")
        return response

    def get_success_url(self) -> str:
        return str(self.request.path)


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    membership = getattr(request, "membership", None)
    if membership is not None:
        audit_record(company=membership.company, actor=Actor.from_request(request),
                     action="console.sign_out", target=request.user.get_username())
    logout(request)
    return redirect(settings.LOGOUT_REDIRECT_URL)


@console_view()
def console_home(request: ConsoleRequest) -> HttpResponseRedirect:
    return redirect("client-list")


@console_view()
def audit_log(request: ConsoleRequest) -> HttpResponse:
    company = request.membership.company
    form = AuditFilterForm(
        request.GET or None, company=company,
        actions=selectors.audit_action_names(company=company),
    )
    filters: dict[str, Any] = {}
    if form.is_bound and form.is_valid():
        filters = {key: value for key, value in form.cleaned_data.items() if value}
    events = selectors.audit_event_list(company=company, **filters)
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "blink/audit_log.html", {
        "section": "audit", "form": form, "page": page, "query": query.urlencode(),
    })


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """The state of the database, the broker and the workers, for load balancers and people."""
    checks: dict[str, str] = {}
    healthy = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception:  # any failure means the same thing here: not ready
        checks["database"] = "unavailable"
        healthy = False
    if settings.CELERY_TASK_ALWAYS_EAGER:
        checks["broker"] = "none (tasks run in-process)"
        checks["workers"] = "in-process"
    else:
        from blink.celery import app

        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            checks["broker"] = "ok"
        except Exception:
            checks["broker"] = "unavailable"
            healthy = False
        if checks["database"] == "ok":
            newest = WorkerHeartbeat.objects.order_by("-seen_at").first()
            if newest is None:
                checks["workers"] = "none seen yet"
            else:
                age = (timezone.now() - newest.seen_at).total_seconds()
                fresh = age <= HEARTBEAT_STALE_SECONDS
                checks["workers"] = f"last seen {int(age)} s ago" + ("" if fresh else " (stale)")
    return JsonResponse({"status": "ok" if healthy else "unavailable", "checks": checks},
                        status=200 if healthy else 503)
