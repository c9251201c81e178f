"""Reads on Blink's own records."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.db.models import QuerySet

from blink.models import AuditEvent, BlinkUser
from clients.models import Client, Company
from directory.models import Entry


def audit_event_list(
    *, company: Company, action: str = "", client: Client | None = None, actor: str = "",
    user: str = "", since: date | None = None, until: date | None = None,
) -> QuerySet[AuditEvent]:
    """The company's audit events, newest first, narrowed by the given filters.

    ``actor`` and ``user`` match part of who acted and of the target's name (a Blink
    user's user name, a client, ...); ``since`` and ``until`` are whole days in UTC, both
    included.
    """
    events = AuditEvent.objects.filter(company=company).select_related("client")
    if action:
        events = events.filter(action=action)
    if client is not None:
        events = events.filter(client=client)
    if actor:
        events = events.filter(actor_label__icontains=actor)
    if user:
        events = events.filter(target_label__icontains=user)
    if since is not None:
        events = events.filter(created_at__gte=datetime.combine(since, time.min, tzinfo=UTC))
    if until is not None:
        end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC)
        events = events.filter(created_at__lt=end)
    return events


def audit_action_names(*, company: Company) -> list[str]:
    """Every action that appears in the company's trail, for the filter menu."""
    return list(
        AuditEvent.objects.filter(company=company)
        .order_by("action")
        .values_list("action", flat=True)
        .distinct()
    )


def pin_missing_count(*, client: Client) -> int:
    """How many of the client's Active Blink users have no PIN (see ``BlinkUser.pin_missing``)."""
    return BlinkUser.objects.filter(client=client, status=BlinkUser.Status.ACTIVE,
                                    pin_hash="").count()


def password_never_expires(*, blink_user: BlinkUser) -> bool:
    """Whether the last sync saw the user's account set to "Password never expires" (AD),
    which Blink refuses to reset. The directory has the last word when a reset runs."""
    return Entry.objects.filter(
        connection_id=blink_user.connection_id, kind=Entry.Kind.USER,
        object_id=blink_user.object_id, password_never_expires=True,
    ).exists()
