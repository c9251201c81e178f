"""Texts users send to a Blink number: recorded once, then routed by keyword in a worker.

The Twilio webhook and the development outbox's "reply as this phone" box both come in
through ``inbound_queue``, which hands the text, sealed, to a worker (task
``inbound_receive`` on the ``sms`` queue); the worker finds the sender, records the text
once per provider message id and routes it by keyword, all in one transaction. The webhook
itself never reads or writes the database for a text (unless the broker is down: then it
keeps the text waiting), nor looks at who sent it. Replies
never depend on whether the sender is a Blink user: an unknown number gets exactly the text
a user's number gets (no enumeration).

RESET and UNLOCK answer every number with the same neutral reply at once; for an Active
Blink user they also record a ``ResetRequest``, whose task (on the directory's worker)
sends the real outcome — the temporary password, or why it could not be done.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.core.cache import cache, caches
from django.db import DatabaseError, IntegrityError, models, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from blink.activation import pin_shaped
from blink.audit import audit_record
from blink.celery import PUBLISH_ERRORS
from blink.models import AuditEvent, BlinkUser, ResetRequest, phone_mask
from blink.resets import ResetRefused, reset_request_create
from clients.models import Company
from directory.base import DirectoryError
from directory.encryption import secrets_decrypt, secrets_encrypt
from directory.models import Entry
from sms.codes import paused_until_locked, wrong_try_counted
from sms.limits import SendLimited, sms_send_allow, window_count
from sms.models import Message, OptOut, VerificationCode
from sms.services import (
    REDACTED,
    SMS_QUEUE,
    phone_opt_in,
    phone_opt_out,
    sms_actor,
    sms_send,
)

log = logging.getLogger(__name__)


# An auto-responder texting back and forth with Blink stops getting answers here.
REPLIES_PER_HOUR = 5

# A handler gets the recorded text and what followed its keyword ("RESET 1234" → "1234"),
# and returns every row it wrote whose task is queued on commit: if the broker cannot
# take those tasks, the rows are removed again, as if the transaction had rolled back.
Handler = Callable[[Message, str], list[models.Model]]


class InboundUnavailable(Exception):
    """The text could not be queued (the broker is down). It waits in the database, if it
    could be kept there, for beat's sweep; tell the provider it was not taken."""


# Which company owns a number changes about never; each web process remembers it this long
# rather than ask the database on every text. A number moved to another company may still
# reach the old one for this long in other processes (this one forgets at once).
COMPANY_MEMORY_SECONDS = 60
_PLAIN = re.compile(r"^\+?[0-9A-Za-z]{1,64}\Z")


def inbound_company(*, to: str, messaging_service_sid: str = "") -> Company | None:
    """The company a text to ``to`` is for: the one that owns the number, else the one
    that owns the Messaging Service, else — for the shared ``BLINK_SMS_NUMBER`` — the
    only company without a number of its own. Never decided by the sender's number."""
    key = f"inbound-company:{to}:{messaging_service_sid}"
    plain = bool(_PLAIN.match(to)) and (not messaging_service_sid
                                         or bool(_PLAIN.match(messaging_service_sid)))
    company: Company | None = caches["local"].get(key) if plain else None
    if company is None:
        company = _company_owning(to=to, messaging_service_sid=messaging_service_sid)
        if company is not None and plain:
            caches["local"].set(key, company, COMPANY_MEMORY_SECONDS)
    return company


def inbound_company_forget() -> None:
    """Forget which company owns which number, in this process (after a change)."""
    caches["local"].clear()


def _company_owning(*, to: str, messaging_service_sid: str) -> Company | None:
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


def _words(body: str) -> list[str]:
    decomposed = unicodedata.normalize("NFKD", body)
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[^\w\s]", "", letters.casefold()).split()


def keyword_parse(body: str) -> tuple[str, str]:
    """The keyword and its argument: "RESET 1234" → ("reset", "1234"), "Réset!" →
    ("reset", ""). Only RESET and UNLOCK take an argument (a PIN: one run of digits);
    anything else that is not one word is ("", "")."""
    words = _words(body)
    if len(words) == 1:
        return words[0], ""
    if len(words) == 2 and words[0] in SELF_SERVICE and words[1].isdigit():
        return words[0], words[1]
    return "", ""


def _stored_body(body: str) -> str:
    """What is kept of a text. Whatever follows RESET or UNLOCK may be a PIN, however it
    was typed ("RESET 12-34", "reset ¹²³⁴"), so none of it is kept; elsewhere runs of four
    or more digits go (a code or a password texted to Blink by mistake)."""
    words = _words(body)
    if len(words) > 1 and words[0] in SELF_SERVICE:
        return f"{words[0].upper()} {REDACTED}"
    return re.sub(r"\d{4,}", REDACTED, body)[:1600]


def _reply_allowed(phone: str) -> bool:
    try:
        return window_count(key=f"sms-replies:{phone}", window=3600) <= REPLIES_PER_HOUR
    except Exception:
        log.exception("reply cap could not be checked; not replying")
        return False


def _reply(message: Message, *, kind: str, text: str,
           opted_out: bool | None = None) -> list[models.Model]:
    phone = str(message.phone)
    if not _reply_allowed(phone):
        log.info("no %s reply to %s: reply cap reached", kind, phone_mask(phone))
        return []
    return [sms_send(company=message.company, phone=message.phone, text=text, kind=kind,
                     blink_user=message.blink_user, opted_out=opted_out)]


def help_text(company: Company) -> str:
    """The reply to HELP and to anything Blink does not understand."""
    text = (f"{company.name} Blink: Text RESET for a new password or UNLOCK to unlock your "
            "account.")
    if company.support_email:
        text += f" Help: {company.support_email}."
    return text + " Text STOP to opt out."


def keyword_help(message: Message, argument: str = "") -> list[models.Model]:
    """HELP, INFO and every text Blink does not understand: the help text."""
    return _reply(message, kind="help", text=help_text(message.company))


def keyword_stop(message: Message, argument: str = "") -> list[models.Model]:
    """STOP and its synonyms: remember the opt-out. Twilio confirms it to the user itself."""
    phone_opt_out(phone=str(message.phone), company=message.company,
                  blink_user=message.blink_user)
    return []


def keyword_start(message: Message, argument: str = "") -> list[models.Model]:
    """START, UNSTOP, YES: forget the opt-out and say so."""
    phone_opt_in(phone=str(message.phone), company=message.company,
                 blink_user=message.blink_user)
    return _reply(message, kind="opt_in", text=(
        f"{message.company.name} Blink messages are back on. Text RESET for a new password "
        "or UNLOCK to unlock your account."
    ))


# -- RESET and UNLOCK ------------------------------------------------------------------------

SELF_SERVICE = {"reset": ResetRequest.Kind.RESET, "unlock": ResetRequest.Kind.UNLOCK}


def neutral_reply(company: Company) -> str:
    """The immediate answer to RESET and UNLOCK, the same for every number."""
    return (f"{company.name} Blink: If this number is registered with Blink, you'll get a "
            "text in a moment.")


def _refuse(blink_user: BlinkUser, action: str, reason: str, **detail: str) -> AuditEvent:
    log.info("%s by SMS for blink user %s refused: %s", action, blink_user.pk, reason)
    return audit_record(company=blink_user.client.company, client=blink_user.client,
                        actor=sms_actor(blink_user), action=action,
                        target=blink_user.username, result=AuditEvent.Result.REFUSED,
                        detail={"channel": "sms", "reason": reason, **detail})


def _why_not(blink_user: BlinkUser, *, opted_out: bool) -> str:
    """Why this user cannot reset by SMS now, or "" when they can (PIN and caps aside).
    ``opted_out``: whether the user's phone texted STOP."""
    if blink_user.status == BlinkUser.Status.LEFT_DIRECTORY:
        return "the account is no longer in the directory"
    if not blink_user.is_active():
        return "the user has not finished activation"
    if blink_user.client.is_archived():
        return "the client is archived"
    if opted_out:
        # Nothing can reach the phone, so a new password would only lock the user out.
        return "the number texted STOP, so Blink cannot text it; it must text START first"
    if blink_user.paused_until and blink_user.paused_until > timezone.now():
        return _paused(blink_user.paused_until)
    entry = (Entry.objects.filter(connection_id=blink_user.connection_id, kind=Entry.Kind.USER,
                                  object_id=blink_user.object_id)
             .values("enabled", "protected").first())
    if entry is not None and not entry["enabled"]:
        return "the account is disabled in the directory"
    if entry is not None and entry["protected"]:
        return "the account is privileged, and Blink does not reset those"
    return ""


def _paused(until: datetime) -> str:
    return (f"self-service is paused until {until:%Y-%m-%d %H:%M} UTC after too many wrong "
            "codes or PINs")


def _wrong_pin(blink_user: BlinkUser, phone: str) -> list[models.Model]:
    """Count a wrong or missing PIN with the user's wrong codes (SECURITY.md: 10 in 24 h
    pause self-service for 24 h). The count is a spent, revoked code row, so codes and PINs
    share one budget and nothing else has to keep it."""
    now = timezone.now()
    attempt = VerificationCode.objects.create(
        blink_user=blink_user, purpose="sms_pin", phone=phone, code_hash="",
        expires_at=now, attempts=1, revoked_at=now,
    )
    if wrong_try_counted(blink_user) is not None:
        # Not a row to take back (see Handler): a pause stands even if this text must wait,
        # and so does the event that says why.
        _refuse(blink_user, "self_service.paused",
                "10 wrong codes or PINs in 24 hours: self-service paused for 24 hours")
    return [attempt]


def _pin_ok(blink_user: BlinkUser, pin: str) -> bool:
    return (pin_shaped(pin) and bool(blink_user.pin_hash)
            and check_password(pin, blink_user.pin_hash))


def _try_again_text(company: Company, retry_after: int) -> str:
    at = timezone.now() + timedelta(seconds=retry_after)
    when = f"{at:%H:%M} UTC" + (f" on {at:%b} {at.day}" if retry_after > 12 * 3600 else "")
    return (f"{company.name} Blink: too many requests from this phone. Try again after "
            f"{when}.")


def _limited(blink_user: BlinkUser, kind: str, limited: SendLimited) -> list[models.Model]:
    """A send cap was reached: tell the user once when to try again, and the admin each time."""
    written: list[models.Model] = []
    try:
        first = bool(cache.add(f"sms-cap-told:{blink_user.pk}", 1, limited.retry_after))
    except Exception:
        log.exception("could not record that blink user %s was told about the cap",
                      blink_user.pk)
        first = False
    company = blink_user.client.company
    if first:
        # _why_not has just found the phone not opted out.
        written.append(sms_send(company=company, phone=blink_user.phone, blink_user=blink_user,
                                kind="limited", opted_out=False,
                                text=_try_again_text(company, limited.retry_after)))
    written.append(_refuse(
        blink_user, f"{kind}.request", "too many SMS for this user or phone (send cap)",
        retry_after=str(limited.retry_after), told="yes" if first else "already told",
    ))
    return written


def self_service_request(*, blink_user: BlinkUser, kind: str, pin: str, phone: str,
                         opted_out: bool, text_id: str) -> list[models.Model]:
    """A RESET or UNLOCK texted by ``blink_user``'s own phone: queue it, or refuse it with
    an audit event and without a word to the phone (the neutral reply is all it gets).

    Wrong or missing PINs (for clients that require one) count as wrong codes; the send
    caps refuse before anything is queued and tell the user once when to try again.
    ``opted_out`` is whether ``phone`` texted STOP; ``text_id`` the text's provider id,
    so that a text acted on again (see ``_wait_again``) counts against the caps once.
    Returns the rows written (see ``Handler``).
    """
    action = f"{kind}.request"
    reason = _why_not(blink_user, opted_out=opted_out)
    if reason:
        return [_refuse(blink_user, action, reason)]
    client = blink_user.client
    if blink_user.pin_missing():
        return [_refuse(blink_user, action, "the client requires a PIN and this user has none "
                        "(they activated before the PIN was required)")]
    if client.sms_reset_needs_pin:
        # Texts sent at the same moment are checked one at a time, each against the pause
        # as the one before left it: no more guesses than SECURITY.md allows.
        paused_until = paused_until_locked(blink_user)
        if paused_until is not None:
            return [_refuse(blink_user, action, _paused(paused_until))]
        if not _pin_ok(blink_user, pin):
            written = _wrong_pin(blink_user, phone)
            return [*written, _refuse(blink_user, action, "wrong PIN" if pin else "no PIN")]
    try:
        sms_send_allow(user_id=blink_user.pk, phone=phone, event=text_id)
    except SendLimited as limited:
        return _limited(blink_user, kind, limited)
    try:
        request = reset_request_create(blink_user=blink_user, actor=sms_actor(blink_user),
                                       channel=ResetRequest.Channel.SMS, kind=kind,
                                       opted_out=opted_out)
    except (ResetRefused, DirectoryError) as refused:
        return [_refuse(blink_user, action, refused.message)]
    # A request already under way is returned rather than a second one made: that one
    # is not this text's to take back.
    return [] if request.joined else [request]


def _self_service(message: Message, kind: str, pin: str) -> list[models.Model]:
    # inbound_act read the user with their client, company and connection (what the
    # reset request needs). The neutral reply and the user's checks share one look at
    # the opt-out list.
    blink_user = message.blink_user
    if blink_user is None:
        return _reply(message, kind="self_service", text=neutral_reply(message.company))
    opted_out = OptOut.objects.filter(phone=blink_user.phone).exists()
    written = _reply(message, kind="self_service", text=neutral_reply(message.company),
                     opted_out=opted_out)
    return written + self_service_request(blink_user=blink_user, kind=kind, pin=pin,
                                          phone=str(message.phone), opted_out=opted_out,
                                          text_id=message.provider_id or "")


def keyword_reset(message: Message, argument: str = "") -> list[models.Model]:
    """RESET (or RESET 1234): the neutral reply; a new temporary password for a user."""
    return _self_service(message, ResetRequest.Kind.RESET, argument)


def keyword_unlock(message: Message, argument: str = "") -> list[models.Model]:
    """UNLOCK (or UNLOCK 1234): the neutral reply; the user's account unlocked."""
    return _self_service(message, ResetRequest.Kind.UNLOCK, argument)


# Keyword → handler. Twilio's own opt-out and opt-in words are here so Blink's record
# agrees with Twilio's.
KEYWORDS: dict[str, Handler] = {
    **dict.fromkeys(
        ("stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"),
        keyword_stop,
    ),
    **dict.fromkeys(("start", "unstop", "yes"), keyword_start),
    **dict.fromkeys(("help", "info"), keyword_help),
    "reset": keyword_reset,
    "unlock": keyword_unlock,
}


def inbound_handle(message: Message, body: str) -> list[models.Model]:
    """Act on one recorded inbound text (``body`` as it came, before digits were
    redacted for storage) by its keyword; returns the rows written (see ``Handler``)."""
    keyword, argument = keyword_parse(body)
    handler = KEYWORDS.get(keyword, keyword_help)
    log.info("sms %s from %s: keyword %r", message.pk, phone_mask(str(message.phone)),
             keyword if keyword in KEYWORDS else "(other)")
    return handler(message, argument)


def _take_back(row: models.Model) -> None:
    """Remove a row this text wrote; a reset request goes with its audit events (the
    request, and its failure to be queued), as if it had never been asked for."""
    if isinstance(row, ResetRequest):
        AuditEvent.objects.filter(detail__request=row.pk,
                                  company__clients__blink_users=row.blink_user_id).delete()
    type(row)._default_manager.filter(pk=row.pk).delete()


def _sealed(body: str) -> str:
    """The text as it came, encrypted, when what is stored of it left something out (a
    PIN after RESET): the worker that acts on it needs it once."""
    return secrets_encrypt({"body": body}) if _stored_body(body) != body else ""


@sensitive_variables()  # the text, and every local below that holds it
def inbound_queue(
    *, company: Company, phone: str, blink_number: str, body: str, provider_id: str,
) -> None:
    """Hand an inbound text to a worker, which records it and acts on it (task
    ``inbound_receive``); all the webhook does, so it answers at once whatever the
    database and the directories are doing.

    The sender and the text travel sealed: a "RESET 1234" must not sit in the broker
    readable. Raises ``InboundUnavailable`` when the task cannot be queued. The text is
    then kept waiting in the database, as a worker keeps one whose replies it could not
    queue, for beat's ``inbound_requeue`` once the broker is back: Twilio does not
    deliver a message again after an error answer unless its webhook URL asks it to.
    A delivery that does come again finds the text waiting and acts on it, once.
    """
    from sms.tasks import inbound_receive as task

    sealed = secrets_encrypt({"phone": str(phone), "body": body})
    try:
        # argsrepr: events and worker logs show "(sealed)" rather than the blob. (Celery
        # passes it on to send_task; celery-types does not list it.)
        task.apply_async((company.pk, blink_number, provider_id, sealed), queue=SMS_QUEUE,
                         argsrepr="(sealed)", kwargsrepr="{}")  # type: ignore[call-arg]
    except PUBLISH_ERRORS as error:
        kept = _keep_waiting(company=company, phone=phone, blink_number=blink_number,
                             body=body, provider_id=provider_id)
        log.warning("sms from %s not queued: the task broker is unavailable (%s); %s",
                    phone_mask(phone), type(error).__name__,
                    "it waits in the database" if kept else "it could not be kept either")
        raise InboundUnavailable(provider_id) from error


@sensitive_variables()  # the text, and every local below that holds it
def _keep_waiting(*, company: Company, phone: str, blink_number: str, body: str,
                  provider_id: str) -> bool:
    """Record a text no worker could be told about as queued (sender not yet looked up,
    a PIN sealed), for ``inbound_requeue``; whether it is in the database now."""
    try:
        Message.objects.create(
            company=company, direction=Message.Direction.INBOUND, kind="inbound",
            phone=phone, blink_number=blink_number, body=_stored_body(body),
            sealed_body=_sealed(body), status=Message.Status.QUEUED, provider_id=provider_id,
        )
    except IntegrityError:
        # Most likely an earlier delivery of the same message is here already.
        return Message.objects.filter(provider_id=provider_id).exists()
    except DatabaseError:
        log.exception("could not keep the text %s waiting", provider_id)
        return False
    return True


class _Seen(Exception):
    """Recording a text broke a constraint: its provider message id was seen before, most
    likely."""

    def __init__(self, error: IntegrityError) -> None:
        super().__init__(str(error))
        self.error = error


def inbound_receive(
    *, company_id: int, blink_number: str, provider_id: str, sealed: str,
) -> Message | None:
    """Record a text ``inbound_queue`` sealed, once per provider message id, and act on it.

    Finding the sender, recording the text and acting on it are one transaction: a worker
    that dies part way leaves nothing, and Celery hands the task out again. Returns the
    text as recorded, or None for an id seen before, which has had (or is having) its one
    effect. The text is stored with long runs of digits redacted.
    """
    fields = secrets_decrypt(sealed)
    phone, body = fields["phone"], fields["body"]
    inbound = Message(
        company_id=company_id, direction=Message.Direction.INBOUND, kind="inbound",
        phone=phone, blink_number=blink_number, body=_stored_body(body),
        status=Message.Status.RECEIVED, provider_id=provider_id,
    )
    written: list[models.Model] = []
    try:
        with transaction.atomic():  # a savepoint when the caller is in a transaction
            _sender_find(inbound)
            try:
                inbound.save(force_insert=True)
            except IntegrityError as error:
                raise _Seen(error) from error
            written = inbound_handle(inbound, body)
    except _Seen as seen_error:
        seen = Message.objects.filter(provider_id=provider_id).values("pk", "status").first()
        if seen is None:
            raise seen_error.error from None  # not a repeat: some other constraint
        log.info("inbound SMS %s was already received", provider_id)
        if seen["status"] == Message.Status.QUEUED:
            # Left waiting by a run whose replies could not be queued.
            inbound_act(message_id=seen["pk"])
        return None
    except PUBLISH_ERRORS:
        _wait_again(inbound.pk, written, body)
        raise
    return inbound


def _sender_find(inbound: Message) -> None:
    """Set who sent the text: the company's Blink user with that phone, read with their
    client, company and connection (what a reset request needs), or None."""
    inbound.blink_user = (
        BlinkUser.objects.select_related("client__company", "connection")
        .filter(phone=inbound.phone, client__company=inbound.company_id).first())
    if inbound.blink_user is not None:
        inbound.company = inbound.blink_user.client.company


def _wait_again(message_id: int, written: list[models.Model], body: str) -> None:
    """The transaction that acted on a text committed, then a task failed to publish:
    take back what it wrote (reset requests, their audit events, wrong-PIN counts too)
    and leave the text queued, sealed as it came, for ``inbound_requeue``."""
    for row in reversed(written):
        if row.pk:
            _take_back(row)
    Message.objects.filter(pk=message_id).update(
        status=Message.Status.QUEUED, blink_user=None, sealed_body=_sealed(body))


def inbound_act(*, message_id: int) -> None:
    """Act on a text left queued (see ``_wait_again``): route it by keyword.

    The row is locked and marked received in the transaction that writes the replies and
    requests, so a task run twice acts once; if they cannot be queued again, the text
    waits again.
    """
    written: list[models.Model] = []
    body = ""
    try:
        with transaction.atomic():
            inbound = (Message.objects.select_for_update(of=("self",))
                       .select_related("company")
                       .filter(pk=message_id, direction=Message.Direction.INBOUND,
                               status=Message.Status.QUEUED).first())
            if inbound is None:
                return
            body = (secrets_decrypt(inbound.sealed_body)["body"] if inbound.sealed_body
                    else inbound.body)
            _sender_find(inbound)
            inbound.status = Message.Status.RECEIVED
            inbound.sealed_body = ""
            inbound.save(update_fields=["blink_user", "status", "sealed_body", "updated_at"])
            written = inbound_handle(inbound, body)
    except PUBLISH_ERRORS:
        _wait_again(message_id, written, body)
        raise


# A queued text is one no worker holds: the webhook kept it, or a worker left it, because
# Redis refused a task. Beat's sweep hands it out at its next run, then again this long
# after each time while it is still waiting (the task was lost, or the workers are behind).
REQUEUE_AFTER = timedelta(minutes=5)
# Older than this, a text is no longer worth acting on: a password reset asked for a day
# ago would surprise its user.
GIVE_UP_AFTER = timedelta(hours=1)


def inbound_requeue() -> int:
    """Hand the waiting inbound texts to a worker: at once the first time, then every
    ``REQUEUE_AFTER`` (``attempts`` counts the times); give up on very old ones. Returns
    how many were queued."""
    from sms.tasks import inbound_process

    now = timezone.now()
    queued = Message.objects.filter(direction=Message.Direction.INBOUND,
                                    status=Message.Status.QUEUED)
    expired = queued.filter(created_at__lt=now - GIVE_UP_AFTER).update(
        status=Message.Status.FAILED, sealed_body="", updated_at=now,
        error_code="expired",
        error_message="Blink could not act on this text within an hour and dropped it.",
    )
    if expired:
        log.warning("dropped %s inbound texts that waited over an hour", expired)
    due = list(queued.filter(Q(attempts=0) | Q(updated_at__lt=now - REQUEUE_AFTER))
               .values_list("pk", flat=True)[:500])
    # Counted before the tasks go: a publish that fails part way leaves the rest due again
    # in REQUEUE_AFTER, never queued twice a minute.
    queued.filter(pk__in=due).update(attempts=F("attempts") + 1, updated_at=now)
    for message_id in due:
        inbound_process.apply_async((message_id,), queue=SMS_QUEUE)
    if due:
        log.info("queued %s waiting inbound texts", len(due))
    return len(due)
