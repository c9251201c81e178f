"""Sending SMS: every message is recorded first, then handed to the provider by a task."""

from __future__ import annotations

import logging
import secrets
import traceback
from datetime import timedelta
from typing import Any, Literal

from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from phonenumber_field.phonenumber import PhoneNumber

from blink.audit import Actor, audit_record
from blink.celery import runs_here
from blink.models import BlinkUser, phone_mask
from clients.models import Company
from directory.encryption import secrets_decrypt, secrets_encrypt
from sms.backends import SmsError, sms_backend
from sms.models import Message, OptOut

log = logging.getLogger(__name__)

# What a secret looks like in stored and displayed message bodies.
REDACTED = "••••••"
OPTED_OUT_MESSAGE = "The user texted STOP; Blink sends nothing until they text START."
# The queue of the send task: only workers that hold the provider's credentials consume it.
SMS_QUEUE = "sms"
# How far back a text to the same phone still waiting in the queue keeps a text sent with
# ``deliver_here`` from overtaking it.
EARLIER_TEXT_WINDOW = timedelta(minutes=1)


def traceback_redacted(error: BaseException, *secrets: str) -> str:
    """The error's traceback for a log, with every given secret replaced by ``REDACTED``.

    Tracebacks of unexpected errors can quote their arguments; a code, a password or
    a message's whole text must not reach the log with them.
    """
    detail = "".join(traceback.format_exception(error))
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, REDACTED)
    return detail


def company_sms_number(company: Company) -> str:
    """The number the company's messages come from: its own, else Blink's shared one."""
    from django.conf import settings

    return str(company.sms_number) if company.sms_number else settings.BLINK_SMS_NUMBER


def sms_send(
    *, company: Company, phone: PhoneNumber | str, text: str, kind: str, secret: str = "",
    blink_user: BlinkUser | None = None, opted_out: bool | None = None,
    deliver_here: bool = False,
) -> Message:
    """Record an outbound SMS and queue its delivery once the transaction commits.

    ``text`` may hold ``{secret}`` (a code or a temporary password): the stored
    body shows it redacted, and the full text is kept encrypted only until the
    provider has it. Numbers that opted out (STOP) get nothing; the message is
    recorded as failed with the reason; ``opted_out`` says whether ``phone`` did, when the
    caller has just looked (else the opt-out list is read here).

    ``deliver_here``: when this process is a worker that also consumes the ``sms`` queue,
    hand the message to the provider right after the commit, in this process, instead of
    through the queue (one trip through the broker fewer for a password someone waits
    for). Anywhere else (a directory worker on its own queue, the web, eager tests) the
    send task takes it as usual.
    """
    if "{secret}" in text and not secret:
        raise ValueError("text has a {secret} placeholder but no secret was given")
    body = text.replace("{secret}", REDACTED)
    message = Message(
        company=company, blink_user=blink_user, direction=Message.Direction.OUTBOUND,
        kind=kind, phone=phone, blink_number=company_sms_number(company), body=body,
    )
    if opted_out is None:
        opted_out = OptOut.objects.filter(phone=phone).exists()
    if opted_out:
        message.status = Message.Status.FAILED
        message.error_code = "opted_out"
        message.error_message = OPTED_OUT_MESSAGE
        message.save()
        return message
    full_text = text.replace("{secret}", secret) if secret else text
    if secret:
        message.sealed_body = secrets_encrypt({"body": full_text})
    message.save()
    log.info("sms %s (%s) queued for %s", message.pk, kind, phone_mask(str(phone)))
    if deliver_here and runs_here(SMS_QUEUE):  # a worker that holds Twilio's credentials
        transaction.on_commit(lambda: _deliver_here(message, redact=(full_text, secret)))
    else:
        message_queue(message_id=message.pk)
    return message


def message_queue(*, message_id: int) -> None:
    """Queue the send task for a recorded outbound message once the transaction commits
    (at once outside one)."""
    transaction.on_commit(lambda: _queue(message_id))


def _queue(message_id: int, **options: Any) -> None:
    """Queue the send task for the message (``options`` as for ``apply_async``)."""
    from sms.tasks import message_send

    message_send.apply_async((message_id,), queue=SMS_QUEUE, **options)


def _earlier_text_waiting(*, message_id: int, phone: str) -> bool:
    """Whether a text written just before this one to the same phone has not reached the
    provider yet (such as the neutral reply to the RESET this password answers)."""
    return Message.objects.filter(
        direction=Message.Direction.OUTBOUND, phone=phone, pk__lt=message_id,
        status__in=[Message.Status.QUEUED, Message.Status.SENDING],
        created_at__gte=timezone.now() - EARLIER_TEXT_WINDOW,
    ).exists()


def _deliver_here(message: Message, *, redact: tuple[str, ...]) -> None:
    """Make the send task's first attempt in this process, on the message just recorded;
    what is left to do goes to the ``sms`` queue as the task would have sent it. Behind an
    earlier text to the same phone that is still queued, the message queues too, so the
    phone gets them in order."""
    message_id, phone = message.pk, str(message.phone)
    outcome: DeliveryOutcome | None = None  # None: leave it to the queue
    try:
        if _earlier_text_waiting(message_id=message_id, phone=phone):
            log.info("sms %s goes through the queue, behind an earlier text to %s",
                     message_id, phone_mask(phone))
        else:
            outcome = message_deliver(message_id=message_id, final_attempt=False,
                                      recorded=message)
    except Exception as error:
        # A bug or the database failing: the queue's send task takes over (its claim keeps
        # a message that did reach the provider from going twice).
        log.error("sms %s could not be handed over in this worker; queueing it:\n%s",
                  message_id, traceback_redacted(error, *redact))
    if outcome is None:
        _queue(message_id)
    elif outcome == "retry":
        countdown = retry_countdown(0)
        log.info("sms %s will be tried again in %.0f s", message_id, countdown)
        # The next run is the task's first retry, as if the task had made this attempt.
        _queue(message_id, countdown=countdown, retries=1)


def message_text(message: Message) -> str:
    """The text to hand the provider: the sealed full text when there is one."""
    if message.sealed_body:
        return secrets_decrypt(message.sealed_body)["body"]
    return message.body


# -- Delivery (the send task calls this) -----------------------------------------------------

DeliveryOutcome = Literal["sent", "failed", "retry", "skipped"]

# How long the provider may keep a text in its queue (a busy Blink number) before dropping
# it: a code lives ten minutes, and nothing Blink sends is worth receiving an hour late
# (Twilio's own default is ten hours). A dropped text is reported as failed, error 30036.
VALIDITY = {"verification": 600}
VALIDITY_DEFAULT = 3600

# A run killed mid-send leaves its message SENDING. Past Celery's hard time limit that
# run cannot still be going, so a re-delivered task may take the message over.
SENDING_LEASE = timedelta(seconds=300)


def retry_countdown(retries: int) -> float:
    """Seconds before the next try: 10, 20, 40, 80, 160, then 300 at most, plus up to
    10 s of jitter so messages that failed together do not all come back together."""
    return min(2**retries * 10, 300) + secrets.randbelow(10_000) / 1000


def _claim(message_id: int) -> bool:
    now = timezone.now()
    fields = {"status": Message.Status.SENDING, "attempts": F("attempts") + 1, "updated_at": now}
    outbound = Message.objects.filter(pk=message_id, direction=Message.Direction.OUTBOUND)
    if outbound.filter(status=Message.Status.QUEUED).update(**fields) == 1:
        return True
    stale = outbound.filter(status=Message.Status.SENDING, updated_at__lt=now - SENDING_LEASE)
    return stale.update(**fields) == 1


def _settle(message: Message, **fields: Any) -> None:
    Message.objects.filter(pk=message.pk).update(updated_at=timezone.now(), **fields)


def message_deliver(*, message_id: int, final_attempt: bool = True,
                    recorded: Message | None = None) -> DeliveryOutcome:
    """Hand one queued outbound message to the SMS backend and record what happened.

    Only the run that claims the row (QUEUED → SENDING) calls the provider, so two runs
    never send one message twice. Sent or failed for good, the sealed text is erased.
    A temporary failure puts the message back to QUEUED and answers "retry", unless
    this is the ``final_attempt``; a permanent one records the provider's reason (and
    the opt-out, for Twilio 21610). ``recorded``: the message as the process that has
    just written it holds it (never tried), so it is not read again.
    """
    if not _claim(message_id):
        return "skipped"
    if recorded is not None and recorded.pk == message_id and recorded.attempts == 0:
        message = recorded
        message.attempts = 1  # as the claim counted it
    else:
        message = Message.objects.select_related("company").get(pk=message_id)
    if OptOut.objects.filter(phone=message.phone).exists():
        # STOP came while the text waited (in the queue, or for a retry): nothing more goes.
        log.info("sms %s to %s dropped: the number texted STOP", message.pk,
                 phone_mask(str(message.phone)))
        _settle(message, status=Message.Status.FAILED, error_code="opted_out",
                error_message=OPTED_OUT_MESSAGE, sealed_body="")
        return "failed"
    company = message.company
    masked = phone_mask(str(message.phone))
    text = ""
    try:
        text = message_text(message)
        provider_id = sms_backend().send(
            to=str(message.phone),
            body=text,
            sender=message.blink_number or company_sms_number(company),
            messaging_service_sid=company.messaging_service_sid,
            status_callback=company.link(reverse("sms-twilio-status")),
            validity_period=VALIDITY.get(message.kind, VALIDITY_DEFAULT),
        )
    except SmsError as error:
        if not error.permanent and not final_attempt:
            log.warning("sms %s to %s not sent (%s); will retry", message.pk, masked, error.code)
            _settle(message, status=Message.Status.QUEUED, error_code=error.code,
                    error_message=f"{error.message} Blink tries again shortly."[:300])
            return "retry"
        reason = error.message
        if not error.permanent:
            reason = (f"{error.message} Blink tried {message.attempts} times and gave up; "
                      "send it again later.")
        log.warning("sms %s to %s failed (%s)", message.pk, masked, error.code)
        if error.code == OPTED_OUT_CODE:
            phone_opt_out(phone=str(message.phone), company=message.company,
                          blink_user=message.blink_user, by_twilio=True)
        _settle(message, status=Message.Status.FAILED, error_code=error.code,
                error_message=reason[:300], sealed_body="")
        return "failed"
    except SoftTimeLimitExceeded:
        # The task ran out of time mid-send (a slow directory had used most of it). The
        # provider may or may not have the text: back in the queue, not failed for good.
        _settle(message, status=Message.Status.QUEUED)
        raise
    except Exception as error:
        # A bug or a key that cannot open the sealed text: record it, never loop on it.
        log.error("sms %s to %s could not be sent:\n%s", message.pk, masked,
                  traceback_redacted(error, text))
        _settle(message, status=Message.Status.FAILED, error_code="error", sealed_body="",
                error_message=f"Blink could not send this message (error in message {message.pk}); "
                "see the worker's log.")
        return "failed"
    _settle(message, status=Message.Status.SENT, provider_id=provider_id, sealed_body="",
            error_code="", error_message="")
    log.info("sms %s sent to %s as %s", message.pk, masked, provider_id)
    return "sent"


# A message still queued and never tried this long after it was written, or after the
# sweep last queued it, has lost its task (the broker refused it after the commit, or a
# worker died holding it): queue it again.
UNSENT_REQUEUE_AFTER = timedelta(minutes=5)
# A message tried before waits for its retry, due within the longest backoff (about 310 s,
# ``retry_countdown``). Still waiting this long, the retry was lost (the broker refused it).
RETRY_LOST_AFTER = timedelta(minutes=10)
# Past this a queued message is not worth sending: a code or a temporary password an hour
# old would only confuse its user. Its sealed text is erased.
UNSENT_GIVE_UP_AFTER = timedelta(hours=1)


def messages_requeue() -> int:
    """Queue again the outbound messages whose send task was lost; fail those that waited
    too long. Returns how many were queued again. (Beat runs it every minute.)

    Lost: never tried and waiting ``UNSENT_REQUEUE_AFTER``; tried and waiting for a retry
    ``RETRY_LOST_AFTER``; or left "sending" past ``SENDING_LEASE`` by a run that died (a
    killed worker's task comes straight back while the lease still holds, finds the message
    taken and ends). Whether the provider took a message whose run died is not known: it
    goes again, as after a timeout. A duplicate of the same text beats a password that
    never arrives and stays sealed.
    """
    now = timezone.now()
    outbound = Message.objects.filter(direction=Message.Direction.OUTBOUND)
    queued = outbound.filter(status=Message.Status.QUEUED)
    abandoned = outbound.filter(status=Message.Status.SENDING,
                                updated_at__lt=now - SENDING_LEASE)
    too_old = Q(created_at__lt=now - UNSENT_GIVE_UP_AFTER)
    expired = (queued.filter(too_old).update(
        status=Message.Status.FAILED, sealed_body="", updated_at=now, error_code="expired",
        error_message="Blink could not hand this message to the SMS provider within an "
                      "hour and dropped it.",
    ) + abandoned.filter(too_old).update(
        status=Message.Status.FAILED, sealed_body="", updated_at=now, error_code="expired",
        error_message="Blink lost track of this message while handing it to the SMS "
                      "provider and dropped it after an hour; it may or may not have gone.",
    ))
    if expired:
        log.warning("dropped %s outbound messages that waited over an hour", expired)
    # Back in the queue (unless a run took it over meanwhile); the send's claim does the rest.
    put_back = list(abandoned.values_list("pk", flat=True)[:500])
    abandoned.filter(pk__in=put_back).update(status=Message.Status.QUEUED, updated_at=now)
    lost = list(queued.filter(
        Q(pk__in=put_back, updated_at=now)
        | Q(attempts=0, updated_at__lt=now - UNSENT_REQUEUE_AFTER)
        | Q(attempts__gt=0, updated_at__lt=now - RETRY_LOST_AFTER),
    ).values_list("pk", flat=True)[:500])
    # Stamped before the tasks go, so a worker that is behind does not get one more task
    # for the same message every minute.
    queued.filter(pk__in=lost).update(updated_at=now)
    for message_id in lost:
        _queue(message_id)
    if lost:
        log.info("queued %s outbound messages again", len(lost))
    return len(lost)


# -- Opt-outs and delivery reports -----------------------------------------------------------

OPTED_OUT_CODE = "21610"
OPTED_OUT_HOW = "Twilio refused a message: the number is unsubscribed (error 21610)"
TWILIO_ACTOR = Actor(label="Twilio")

# What Twilio's delivery error codes mean, for the admin who reads the message's status.
DELIVERY_ERRORS = {
    "30001": "Twilio's queue for the Blink number overflowed. Send it again in a while.",
    "30002": "The Twilio account is suspended. Check the account in Twilio's console.",
    "30003": "The phone was off or out of coverage, so the SMS was not delivered. "
             "Ask the user to check their phone, then send it again.",
    "30004": "The user's phone or carrier blocked the message.",
    "30005": "The number does not exist or is no longer in service. Ask the user for "
             "their current mobile number.",
    "30006": "The number is a landline or its carrier cannot receive SMS. Ask the user for "
             "a mobile number.",
    "30007": "The carrier filtered the message as unwanted. Check the Blink number's "
             "registration with Twilio.",
    "30008": "The carrier could not deliver the message and gave no reason. Send it again "
             "in a while.",
    "30032": "The toll-free Blink number is not verified, so carriers refuse its messages.",
    "30034": "The Blink number is not registered for A2P 10DLC, so US carriers refuse its "
             "messages.",
    OPTED_OUT_CODE: "The user texted STOP to this number, so Blink cannot text them until "
                    "they text START.",
    "30036": "The text waited in Twilio's queue longer than it was worth (a code ten minutes, "
             "anything else an hour) and was dropped. Send it again.",
}

# Twilio's MessageStatus values that settle a message; earlier ones change nothing here.
_FINAL = {
    "delivered": Message.Status.DELIVERED,
    "read": Message.Status.DELIVERED,
    "undelivered": Message.Status.UNDELIVERED,
    "failed": Message.Status.FAILED,
    "canceled": Message.Status.FAILED,
}


def phone_opt_out(*, phone: str, company: Company, blink_user: BlinkUser | None,
                  by_twilio: bool = False) -> None:
    """Remember that ``phone`` texted STOP, or that Twilio reported it unsubscribed
    (``by_twilio``: it refused a message with 21610); the change leaves an audit event in
    ``company``'s trail."""
    _, created = OptOut.objects.get_or_create(phone=phone)
    log.info("%s opted out of Blink's SMS", phone_mask(phone))
    if created:
        _opt_audit("sms.opt_out", phone=phone, company=company, blink_user=blink_user,
                   how=OPTED_OUT_HOW if by_twilio else "texted STOP",
                   actor=TWILIO_ACTOR if by_twilio else None)


def phone_opt_in(*, phone: str, company: Company, blink_user: BlinkUser | None) -> None:
    """Forget an opt-out: the number texted START."""
    deleted, _ = OptOut.objects.filter(phone=phone).delete()
    log.info("%s opted back in to Blink's SMS", phone_mask(phone))
    if deleted:
        _opt_audit("sms.opt_in", phone=phone, company=company, blink_user=blink_user,
                   how="texted START")


def sms_actor(blink_user: BlinkUser) -> Actor:
    """A Blink user acting by a text: "from where" is the phone, masked as everywhere."""
    return Actor(label=f"{blink_user.username} (SMS from {blink_user.masked_phone()})")


def _opt_audit(action: str, *, phone: str, company: Company, blink_user: BlinkUser | None,
               how: str, actor: Actor | None = None) -> None:
    """``actor``: who did it when not the phone's owner texting."""
    masked = phone_mask(phone)
    texter = sms_actor(blink_user) if blink_user else Actor(label=f"SMS from {masked}")
    audit_record(company=company, client=blink_user.client if blink_user else None,
                 actor=actor or texter, action=action,
                 target=blink_user.username if blink_user else masked,
                 detail={"how": how, "phone": masked})


def message_status_update(*, message: Message, status: str, error_code: str = "") -> bool:
    """Apply a provider delivery report (Twilio's status callback) to an outbound message.

    Reports arrive out of order; a message that is already delivered, undelivered or
    failed keeps its first final status. Returns whether anything changed.
    """
    final = _FINAL.get(status)
    if final is None:
        return False
    fields: dict[str, Any] = {"status": final, "sealed_body": ""}
    if error_code:
        fields["error_code"] = error_code
        fields["error_message"] = DELIVERY_ERRORS.get(
            error_code, f"The carrier reported error {error_code}; see "
            f"https://www.twilio.com/docs/api/errors/{error_code}."
        )
    elif final == Message.Status.DELIVERED:
        fields.update(error_code="", error_message="")
    changed = Message.objects.filter(
        pk=message.pk, direction=Message.Direction.OUTBOUND,
        status__in=[Message.Status.SENDING, Message.Status.SENT],
    ).update(updated_at=timezone.now(), **fields)
    if changed and error_code == OPTED_OUT_CODE:
        # Only a report that changed something: the same report delivered again (late, or
        # replayed) must not undo a START the user texted since.
        phone_opt_out(phone=str(message.phone), company=message.company,
                      blink_user=message.blink_user, by_twilio=True)
    if changed:
        log.info("sms %s is %s%s", message.pk, final, f" ({error_code})" if error_code else "")
    return changed == 1
