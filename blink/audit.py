"""The audit trail: who did what, to what, with what result, from where."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http import HttpRequest

from blink.models import AuditEvent

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

    from clients.models import Client, Company


def client_ip(request: HttpRequest) -> str | None:
    """The address the request came from, trusting only the configured proxies.

    Each trusted proxy appends the address it received the request from to
    X-Forwarded-For, so the client is the entry that many places from the end.
    """
    candidate = request.META.get("REMOTE_ADDR", "")
    hops = settings.BLINK_TRUSTED_PROXIES
    if hops:
        header = request.META.get("HTTP_X_FORWARDED_FOR", "")
        forwarded = [part.strip() for part in header.split(",") if part.strip()]
        if len(forwarded) >= hops:
            candidate = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


@dataclass(frozen=True)
class Actor:
    """Who is acting, for the audit trail: a console user, a Blink user or Blink itself."""

    label: str
    user: User | None = None
    ip: str | None = None

    @classmethod
    def from_request(cls, request: HttpRequest) -> Actor:
        user: User | AnonymousUser = request.user
        if user.is_authenticated:
            return cls(label=user.get_username(), user=user, ip=client_ip(request))
        return cls(label="anonymous", ip=client_ip(request))


SYSTEM = Actor(label="Blink")


def audit_record(
    *,
    company: Company,
    actor: Actor,
    action: str,
    target: str = "",
    client: Client | None = None,
    result: str = AuditEvent.Result.OK,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the company's audit trail. Never pass secrets in ``detail``."""
    return AuditEvent.objects.create(
        company=company,
        client=client,
        actor=actor.user if actor.user is not None and actor.user.pk else None,
        actor_label=actor.label[:150],
        action=action,
        target_label=target[:200],
        result=result,
        detail=detail or {},
        ip_address=actor.ip,
    )


def audit_record_many(
    *, company: Company, actor: Actor, action: str, targets: list[tuple[str, dict[str, Any]]],
    client: Client | None = None,
) -> None:
    """One event per target (label, detail) for the same action, written in bulk."""
    user = actor.user if actor.user is not None and actor.user.pk else None
    AuditEvent.objects.bulk_create(
        [AuditEvent(company=company, client=client, actor=user, actor_label=actor.label[:150],
                    action=action, target_label=label[:200], detail=detail,
                    ip_address=actor.ip) for label, detail in targets],
        batch_size=500,
    )


def changes_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """The fields whose values differ, as ``{field: [old, new]}``, for an audit detail."""
    return {
        field: [before.get(field), value]
        for field, value in after.items()
        if before.get(field) != value
    }
