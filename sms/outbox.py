"""An email backend that keeps messages in the database instead of sending them."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from sms.models import OutboxEmail


class EmailBackend(BaseEmailBackend):
    """Stores each message as an ``OutboxEmail`` row (the development default)."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        for message in email_messages:
            html = ""
            for content, mimetype in getattr(message, "alternatives", []):
                if mimetype == "text/html":
                    html = str(content)
            OutboxEmail.objects.create(
                to=", ".join(message.to),
                subject=message.subject[:300],
                body_text=str(message.body),
                body_html=html,
            )
        return len(email_messages)
