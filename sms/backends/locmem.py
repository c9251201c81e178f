"""A backend that keeps messages in memory, for tests (like ``django.core.mail.outbox``)."""

from __future__ import annotations

import secrets
from typing import TypedDict


class SentSms(TypedDict):
    """One message as the locmem backend 'sent' it: the text as the phone would show it."""

    to: str
    body: str
    sender: str
    messaging_service_sid: str
    status_callback: str
    provider_id: str


# Every message sent in this process, oldest first. Tests clear it.
outbox: list[SentSms] = []


class SmsBackend:
    """Appends each message to ``outbox`` and succeeds."""

    def send(
        self, *, to: str, body: str, sender: str, messaging_service_sid: str = "",
        status_callback: str = "", validity_period: int = 0,
    ) -> str:
        """Record the message and return a made-up Twilio-shaped id."""
        provider_id = "SMLOCMEM" + secrets.token_hex(13)
        outbox.append(SentSms(
            to=to, body=body, sender=sender, messaging_service_sid=messaging_service_sid,
            status_callback=status_callback, provider_id=provider_id,
        ))
        return provider_id
