"""Writes on the MSP side. Every change leaves an audit event."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from phonenumber_field.phonenumber import PhoneNumber

from blink.audit import Actor, audit_record, changes_between
from clients.branding import Logo
from clients.models import Branding, Client, Company, Membership, Role

COMPANY_FIELDS = ("name", "support_email", "site_url", "default_country", "sms_number",
                  "messaging_service_sid", "notify_support_on_reset")
CLIENT_FIELDS = ("name", "temp_password_length", "unlock_on_reset", "sms_reset_needs_pin")


def _snapshot(obj: object, fields: tuple[str, ...]) -> dict[str, Any]:
    # Phone numbers are objects; the audit detail is JSON.
    return {
        field: str(value) if isinstance(value, PhoneNumber) else value
        for field, value in ((field, getattr(obj, field)) for field in fields)
    }


@transaction.atomic
def company_create(
    *, name: str, site_url: str, owner: User, default_country: str = "US"
) -> Company:
    """Create an MSP company with its branding, and make ``owner`` its owner."""
    company = Company.objects.create(name=name, site_url=site_url, default_country=default_country)
    Branding.objects.create(company=company)
    Membership.objects.create(user=owner, company=company, role=Role.OWNER)
    audit_record(
        company=company, actor=Actor(label=owner.get_username(), user=owner),
        action="company.create", target=name,
    )
    return company


@transaction.atomic
def company_settings_update(
    *, company: Company, actor: Actor, name: str, support_email: str, site_url: str,
    default_country: str, sms_number: str | None = None,
    messaging_service_sid: str | None = None, notify_support_on_reset: bool | None = None,
) -> Company:
    """Change the company's general settings.

    ``sms_number`` (E.164, or "" for Blink's shared number), ``messaging_service_sid`` and
    ``notify_support_on_reset`` are left as they are when not given.
    """
    before = _snapshot(company, COMPANY_FIELDS)
    company.name = name
    company.support_email = support_email
    company.site_url = site_url.rstrip("/")
    company.default_country = default_country
    if sms_number is not None:
        company.sms_number = sms_number
    if messaging_service_sid is not None:
        company.messaging_service_sid = messaging_service_sid
    if notify_support_on_reset is not None:
        company.notify_support_on_reset = notify_support_on_reset
    company.full_clean()
    company.save()
    from sms.inbound import inbound_company_forget

    transaction.on_commit(inbound_company_forget)
    changed = changes_between(before, _snapshot(company, COMPANY_FIELDS))
    if changed:
        audit_record(company=company, actor=actor, action="company.update", target=company.name,
                     detail={"changed": changed})
    return company


@transaction.atomic
def branding_update(
    *, company: Company, actor: Actor, primary_colour: str, accent_colour: str,
    email_text: str, logo: Logo | None = None, remove_logo: bool = False,
) -> Branding:
    """Change the company's colours and email text, and replace or remove its logo."""
    branding, _ = Branding.objects.select_for_update().get_or_create(company=company)
    before = {
        "primary_colour": branding.primary_colour,
        "accent_colour": branding.accent_colour,
        "email_text": branding.email_text,
    }
    branding.primary_colour = primary_colour.lower()
    branding.accent_colour = accent_colour.lower()
    branding.email_text = email_text
    logo_change = ""
    if logo is not None:
        branding.logo = logo.content
        branding.logo_content_type = logo.content_type
        logo_change = "replaced"
    elif remove_logo and branding.has_logo():
        branding.logo = b""
        branding.logo_content_type = ""
        logo_change = "removed"
    branding.full_clean()
    branding.save()
    after = {
        "primary_colour": branding.primary_colour,
        "accent_colour": branding.accent_colour,
        "email_text": branding.email_text,
    }
    changed = changes_between(before, after)
    if "email_text" in changed:
        # The text can be long: record that it changed, not both versions.
        changed["email_text"] = ["(previous text)", "(new text)"]
    detail: dict[str, Any] = {"changed": changed}
    if logo_change:
        detail["logo"] = logo_change
    if changed or logo_change:
        audit_record(company=company, actor=actor, action="branding.update",
                     target=company.name, detail=detail)
    return branding


@transaction.atomic
def client_create(
    *, company: Company, actor: Actor, name: str, temp_password_length: int = 12,
    unlock_on_reset: bool = True, sms_reset_needs_pin: bool = False,
) -> Client:
    """Add a client company to the MSP."""
    client = Client(company=company, name=name, temp_password_length=temp_password_length,
                    unlock_on_reset=unlock_on_reset, sms_reset_needs_pin=sms_reset_needs_pin)
    client.full_clean()
    client.save()
    audit_record(company=company, actor=actor, action="client.create", target=client.name,
                 client=client, detail={"settings": _snapshot(client, CLIENT_FIELDS)})
    return client


@transaction.atomic
def client_update(
    *, client: Client, actor: Actor, name: str, temp_password_length: int,
    unlock_on_reset: bool, sms_reset_needs_pin: bool,
) -> Client:
    """Change a client's name and reset policy."""
    before = _snapshot(client, CLIENT_FIELDS)
    client.name = name
    client.temp_password_length = temp_password_length
    client.unlock_on_reset = unlock_on_reset
    client.sms_reset_needs_pin = sms_reset_needs_pin
    client.full_clean()
    client.save()
    changed = changes_between(before, _snapshot(client, CLIENT_FIELDS))
    if changed:
        audit_record(company=client.company, actor=actor, action="client.update",
                     target=client.name, client=client, detail={"changed": changed})
    return client


@transaction.atomic
def client_archive(*, client: Client, actor: Actor) -> Client:
    """Archive a client: it leaves the lists and its users stop being served. Reversible."""
    if client.archived_at is None:
        client.archived_at = timezone.now()
        client.save(update_fields=["archived_at"])
        audit_record(company=client.company, actor=actor, action="client.archive",
                     target=client.name, client=client)
    return client


@transaction.atomic
def client_restore(*, client: Client, actor: Actor) -> Client:
    """Bring an archived client back."""
    if client.archived_at is not None:
        client.archived_at = None
        client.save(update_fields=["archived_at"])
        audit_record(company=client.company, actor=actor, action="client.restore",
                     target=client.name, client=client)
    return client
