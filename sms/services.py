"""Sending SMS: every message is recorded first, then handed to the provider by a task."""

from __future__ import annotations

import logging

from django.db import transaction
from phonenumber_field.phonenumber import PhoneNumber

from blink.models import BlinkUser, phone_mask
from clients.models import Company
from directory.encryption import secrets_decrypt, secrets_encrypt
from sms.models import Message, OptOut

log = logging.getLogger(__name__)

# What a secret looks like in stored and displayed message bodies.
REDACTED = "••••••"


def company_sms_number(company: Company) -> str:
    from django.conf import settings

    return str(company.sms_number) if company.sms_number else settings.BLINK_SMS_NUMBER


def sms_send(
    *, company: Company, phone: PhoneNumber | str, text: str, kind: str, secret: str = "",
    blink_user: BlinkUser | None = None,
) -> Message:
    """Record an outbound SMS and queue its delivery once the transaction commits.

    ``text`` may hold ``{secret}`` (a code or a temporary password): the stored
    body shows it redacted, and the full text is kept encrypted only until the
    provider has it. Numbers that opted out (STOP) get nothing; the message is
    recorded as failed with the reason.
    """
    if "{secret}" in text and not secret:
        raise ValueError("text has a {secret} placeholder but no secret was given")
    body = text.replace("{secret}", REDACTED)
    message = Message(
        company=company, blink_user=blink_user, direction=Message.Direction.OUTBOUND,
        kind=kind, phone=phone, blink_number=company_sms_number(company), body=body,
    )
    if OptOut.objects.filter(phone=phone).exists():
        message.status = Message.Status.FAILED
        message.error_code = "opted_out"
        message.error_message = "The user texted STOP; Blink sends nothing until they text START."
        message.save()
        return message
    if secret:
        message.sealed_body = secrets_encrypt({"body": text.replace("{secret}", secret)})
    message.save()
    log.info("sms %s (%s) queued for %s", message.pk, kind, phone_mask(str(phone)))

    from sms.tasks import message_send

    transaction.on_commit(lambda: message_send.apply_async((message.pk,), queue="sms"))
    return message


def message_text(message: Message) -> str:
    """The text to hand the provider: the sealed full text when there is one."""
    if message.sealed_body:
        return secrets_decrypt(message.sealed_body)["body"]
    return message.body
