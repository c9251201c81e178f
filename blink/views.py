"""Console pages on Blink's side, sign-in, and the health check."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC
from typing import Any, cast

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordChangeForm
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from blink import selectors
from blink.audit import Actor, audit_record
from blink.forms import AuditFilterForm
from blink.models import AuditEvent, WorkerHeartbeat
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


def _audit_filtered(request: ConsoleRequest) -> tuple[AuditFilterForm, QuerySet[AuditEvent]]:
    """The filter form as submitted and the company's events it selects (all of them when
    nothing valid was asked for)."""
    company = request.membership.company
    form = AuditFilterForm(
        request.GET or None, company=company,
        actions=selectors.audit_action_names(company=company),
    )
    filters: dict[str, Any] = {}
    if form.is_bound and form.is_valid():
        filters = {key: value for key, value in form.cleaned_data.items() if value}
    return form, selectors.audit_event_list(company=company, **filters)


@console_view()
def audit_log(request: ConsoleRequest) -> HttpResponse:
    form, events = _audit_filtered(request)
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "blink/audit_log.html", {
        "section": "audit", "form": form, "page": page, "query": query.urlencode(),
    })


AUDIT_CSV_COLUMNS = ["When (UTC)", "Who", "Action", "Target", "Client", "Result", "From",
                     "Details"]
# A spreadsheet reads a cell starting with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: str) -> str:
    """``value`` made safe for a spreadsheet: a leading formula character is quoted."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


class _Echo:
    """A file-like object whose write returns the line, for streaming csv.writer output."""

    def write(self, value: str) -> str:
        return value


def _audit_rows(events: QuerySet[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(AUDIT_CSV_COLUMNS)
    for event in events.iterator(chunk_size=1000):
        yield writer.writerow([csv_cell(cell) for cell in (
            event.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            event.actor_label,
            event.action,
            event.target_label,
            event.client.name if event.client else "",
            event.get_result_display(),
            event.ip_address or "",
            json.dumps(event.detail, ensure_ascii=False, sort_keys=True),
        )])


@require_GET
@console_view()
def audit_export(request: ConsoleRequest) -> HttpResponse:
    """The audit events the page's filters select, as a CSV download (every member)."""
    form, events = _audit_filtered(request)
    if form.is_bound and not form.is_valid():
        problems = "; ".join(f"{name}: {' '.join(str(e) for e in errors)}"
                             for name, errors in form.errors.items())
        return HttpResponse(f"These filters cannot be used: {problems}", status=400,
                            content_type="text/plain; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(_audit_rows(events), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="blink-audit-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    # Streamed, so a long trail never sits in memory; console_view only passes it through.
    return cast(HttpResponse, response)


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
