"""A backend that stores messages for the development outbox page instead of sending them."""

from __future__ import annotations

import secrets

from sms.models import OutboxSms


class SmsBackend:
    """Stores each message as an ``OutboxSms`` row: the trial's stand-in for a phone."""

    def send(
        self, *, to: str, body: str, sender: str, messaging_service_sid: str = "",
        status_callback: str = "", validity_period: int = 0,
    ) -> str:
        """Keep the message (its full text, by design) and return a made-up id."""
        provider_id = "SMOUTBOX" + secrets.token_hex(13)
        # A Messaging Service SID (34 characters) is shown by its tail when there is no number.
        shown = sender or (f"MG…{messaging_service_sid[-8:]}" if messaging_service_sid else "")
        OutboxSms.objects.create(to=to, sender=shown, body=body, provider_id=provider_id)
        return provider_id
