"""Texts users send to a Blink number: recorded once, then routed by keyword.

The Twilio webhook and the development outbox's "reply as this phone" box both come in
through ``inbound_receive``. Replies never depend on whether the sender is a Blink
user: an unknown number gets exactly the text a user's number gets (no enumeration).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable

import kombu.exceptions
import redis.exceptions
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction

from blink.models import BlinkUser, phone_mask
from clients.models import Company
from sms.models import Message
from sms.services import REDACTED, phone_opt_in, phone_opt_out, sms_send

log = logging.getLogger(__name__)

# Raised by Celery and the Redis client when a task cannot be published.
PUBLISH_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError, redis.exceptions.RedisError, OSError,
)

# An auto-responder texting back and forth with Blink stops getting answers here.
REPLIES_PER_HOUR = 5

Handler = Callable[[Message], list[Message]]


class InboundDuplicate(Exception):
    """This provider message id was already received: it has had its one effect."""


class InboundUnavailable(Exception):
    """The reply could not be queued (the broker is down); nothing was kept. Ask the
    provider to deliver the message again later."""


def inbound_company(*, to: str, messaging_service_sid: str = "") -> Company | None:
    """The company a text to ``to`` is for: the one that owns the number, else the one
    that owns the Messaging Service, else — for the shared ``BLINK_SMS_NUMBER`` — the
    only company without a number of its own. Never decided by the sender's number."""
    if to:
        owners = list(Company.objects.filter(sms_number=to)[:2])
        if len(owners) == 1:
            return owners[0]
    if messaging_service_sid:
        owners = list(Company.objects.filter(messaging_service_sid=messaging_service_sid)[:2])
        if len(owners) == 1:
            return owners[0]
    if to and to == settings.BLINK_SMS_NUMBER:
        shared = list(Company.objects.filter(sms_number="")[:2])
        if len(shared) == 1:
            return shared[0]
    return None


def keyword_normalise(body: str) -> str:
    """The keyword a text means: " reset ", "RESET!" and "Réset" are all "reset".

    Accents and punctuation go, case folds; a text that is not one word is "".
    """
    decomposed = unicodedata.normalize("NFKD", body)
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    words = re.sub(r"[^\w\s]", "", letters.casefold()).split()
    return words[0] if len(words) == 1 else ""


def _stored_body(body: str) -> str:
    # A user may text a code or password to Blink by mistake; keep no digits runs of it.
    return re.sub(r"\d{4,}", REDACTED, body)[:1600]


def _reply_allowed(phone: str) -> bool:
    key = f"sms-replies:{phone}"
    try:
        cache.add(key, 0, 3600)
        return int(cache.incr(key)) <= REPLIES_PER_HOUR
    except Exception:
        log.exception("reply cap could not be checked; not replying")
        return False


def _reply(message: Message, *, kind: str, text: str) -> list[Message]:
    if not _reply_allowed(str(message.phone)):
        log.info("no %s reply to %s: reply cap reached", kind, phone_mask(str(message.phone)))
        return []
    return [sms_send(company=message.company, phone=message.phone, text=text, kind=kind,
                     blink_user=message.blink_user)]


def help_text(company: Company) -> str:
    """The reply to HELP and to anything Blink does not understand."""
    text = (f"{company.name} Blink: Text RESET for a new password or UNLOCK to unlock your "
            "account.")
    if company.support_email:
        text += f" Help: {company.support_email}."
    return text + " Text STOP to opt out."


def keyword_help(message: Message) -> list[Message]:
    """HELP, INFO and every text Blink does not understand: the help text."""
    return _reply(message, kind="help", text=help_text(message.company))


def keyword_stop(message: Message) -> list[Message]:
    """STOP and its synonyms: remember the opt-out. Twilio confirms it to the user itself."""
    phone_opt_out(phone=str(message.phone))
    return []


def keyword_start(message: Message) -> list[Message]:
    """START, UNSTOP, YES: forget the opt-out and say so."""
    phone_opt_in(phone=str(message.phone))
    return _reply(message, kind="opt_in", text=(
        f"{message.company.name} Blink messages are back on. Text RESET for a new password "
        "or UNLOCK to unlock your account."
    ))


# Keyword → handler. Twilio's own opt-out and opt-in words are here so Blink's record
# agrees with Twilio's; RESET and UNLOCK answer with help until their flows replace them.
KEYWORDS: dict[str, Handler] = {
    **dict.fromkeys(
        ("stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"),
        keyword_stop,
    ),
    **dict.fromkeys(("start", "unstop", "yes"), keyword_start),
    **dict.fromkeys(("help", "info"), keyword_help),
    "reset": keyword_help,
    "unlock": keyword_help,
}


def inbound_handle(message: Message) -> list[Message]:
    """Act on one recorded inbound text by its keyword; returns the replies queued."""
    keyword = keyword_normalise(message.body)
    handler = KEYWORDS.get(keyword, keyword_help)
    log.info("sms %s from %s: keyword %r", message.pk, phone_mask(str(message.phone)),
             keyword if keyword in KEYWORDS else "(other)")
    return handler(message)


def inbound_receive(
    *, company: Company, phone: str, blink_number: str, body: str, provider_id: str,
) -> Message:
    """Record an inbound text and act on it, once per provider message id.

    Raises ``InboundDuplicate`` for an id seen before (nothing happens again) and
    ``InboundUnavailable`` when a reply cannot be queued; then nothing is kept, so the
    provider's next delivery of the same message is acted on afresh.
    """
    inbound: Message | None = None
    replies: list[Message] = []
    try:
        with transaction.atomic():
            inbound = Message.objects.create(
                company=company, direction=Message.Direction.INBOUND, kind="inbound",
                phone=phone, blink_number=blink_number, body=_stored_body(body),
                status=Message.Status.RECEIVED, provider_id=provider_id,
                blink_user=BlinkUser.objects.filter(phone=phone,
                                                    client__company=company).first(),
            )
            replies = inbound_handle(inbound)
    except IntegrityError:
        if Message.objects.filter(provider_id=provider_id).exists():
            raise InboundDuplicate(provider_id) from None
        raise
    except PUBLISH_ERRORS as error:
        # The rows committed before the reply's task failed to publish: take them back.
        kept = [m.pk for m in (inbound, *replies) if m is not None and m.pk]
        Message.objects.filter(pk__in=kept).delete()
        log.warning("sms from %s not handled: the task broker is unavailable (%s)",
                    phone_mask(phone), type(error).__name__)
        raise InboundUnavailable(provider_id) from error
    return inbound
