"""Blink's emails, from templates/emails/<name>_subject.txt, _message.txt and _message.html."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string

from clients.branding import email_text_render
from clients.models import Branding, Company


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def email_render(name: str, context: dict[str, Any]) -> RenderedEmail:
    """Render one named email in its three parts."""
    subject = render_to_string(f"emails/{name}_subject.txt", context)
    return RenderedEmail(
        subject=" ".join(subject.split()),
        text=render_to_string(f"emails/{name}_message.txt", context),
        html=render_to_string(f"emails/{name}_message.html", context),
    )


def branded_email_render(name: str, *, company: Company, **context: Any) -> RenderedEmail:
    """One of Blink's emails to a user, in the company's branding (logo, colours) and with
    its support address; ``context`` is the email's own."""
    branding, _ = Branding.objects.get_or_create(company=company)
    return email_render(name, {
        "company": company, "branding": branding,
        "logo_url": company.link(branding.logo_url()) if branding.has_logo() else "",
        "support_email": company.support_email, "hours": settings.BLINK_ACTIVATION_HOURS,
        **context,
    })


def activation_email_render(
    *, company: Company, branding: Branding, first_name: str, full_name: str, link: str,
    logo_url: str = "",
) -> RenderedEmail:
    """The activation email a user receives, with the company's branding and text."""
    intro = email_text_render(
        branding.email_text,
        {
            "first_name": first_name,
            "full_name": full_name,
            "company_name": company.name,
            "support_email": company.support_email,
        },
    )
    return email_render(
        "activation",
        {
            "company": company,
            "branding": branding,
            "intro": intro,
            "link": link,
            "logo_url": logo_url,
            "support_email": company.support_email,
            "hours": settings.BLINK_ACTIVATION_HOURS,
        },
    )
