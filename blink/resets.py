"""Password resets and unlocks: asked for in the console, by SMS or from the app; done by a
worker on the directory connection's queue; the password reaches only the user's phone.

Order of events in a reset (``reset_run``):
1. claim the request (queued → running; a request left running by a dead worker can be
   claimed again once stale);
2. make a password for the user's policy and seal it on the request *before* the
   directory call, so a task that runs again re-applies that same password;
3. reset in the directory (must change at next logon; unlock too when the client says so);
4. only then record the SMS that carries the password, in the same transaction that marks
   the request sent and forgets the sealed password; after the commit a worker that also
   serves the ``sms`` queue hands it to the provider itself (``sms_send(deliver_here=True)``),
   any other puts it on that queue. A run that dies between that commit and the provider
   leaves the text queued with no task to send it; Celery hands the reset task back (it is
   acknowledged late), and that run, finding the request sent, queues the text.
5. then queue the emails (``reset_emails_send``): a confirmation to the user, and a notice
   to the company's support address when it asks for one; neither carries the password.
A directory that refuses or cannot be reached ends the request failed with its reason, and
the user is told without any password.

Where the request is made decides where it runs. The console (a web process) queues the task
on the connection's queue. A worker that serves that queue itself, as the ``sms`` worker
handling a texted RESET does for a directory in Blink's reach, runs it in-process as soon
as the request is committed; the queued task is then only a backstop, due once the request
would look stale (see ``_publish``).
"""

from __future__ import annotations

import logging
import smtplib
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from blink.audit import Actor, audit_record
from blink.celery import PUBLISH_ERRORS, runs_here
from blink.emails import branded_email_render
from blink.models import AuditEvent, BlinkUser, ResetRequest
from directory.backends import directory_for
from directory.base import DirectoryError
from directory.encryption import SecretsUnreadable, secrets_decrypt, secrets_encrypt
from directory.passwords import temporary_password
from directory.selectors import PasswordAccount, password_account
from sms.models import Message, OptOut
from sms.services import message_queue, sms_send, traceback_redacted

log = logging.getLogger(__name__)

STOPPED_REASON = ("This user's phone texted STOP to the Blink number, so Blink cannot text "
                  "them a password or the result. They must text START first.")
SUPERSEDED_REASON = ("No worker carried this out in time, and a newer request replaced it. "
                     "Check that the directory's worker is running.")
EXPIRED_REASON = ("No worker carried this out within an hour, so Blink dropped it. Check "
                  "that the directory's worker is running, then try again.")
# A request still waiting this long after its task was queued has most likely lost the
# task (Redis restarted, or the process that made it died before publishing): beat's
# resets_requeue queues it again, at most this often.
REQUEUE_AFTER = timedelta(minutes=5)
# A request not carried out within this long is failed and its user told: a password
# arriving hours after it was asked for would surprise more than help.
GIVE_UP_AFTER = timedelta(hours=1)
UNQUEUED_REASON = ("Blink could not queue this request: its task queue (Redis) did not answer. "
                   "Nothing was changed and nothing was sent; try again in a few minutes.")


class ResetRefused(Exception):
    """The request cannot be made; ``message`` says why, for the admin."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _account(blink_user: BlinkUser) -> PasswordAccount:
    """Where the user's password is reset: the connection that holds it and the user's id
    there (see ``password_account``); ``DirectoryError`` when Blink cannot reach it."""
    return password_account(connection=blink_user.connection, object_id=blink_user.object_id)


def _queue_again(blink_user: BlinkUser) -> str:
    """The queue to hand a recorded request to again: its password connection's, or the
    user's own connection's when that can no longer be worked out (the run then fails
    with the reason)."""
    try:
        return _account(blink_user).connection.queue
    except DirectoryError:
        return blink_user.connection.queue


def _stale_after() -> timedelta:
    """How long a running request may look running before it is taken for dead: past
    Celery's hard time limit no run can still be going."""
    return timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 30)


def _claimable(now: datetime) -> Q:
    """Requests a run may take: queued, or left running by a run that must be dead."""
    return (Q(status=ResetRequest.Status.QUEUED)
            | Q(status=ResetRequest.Status.RUNNING, started_at__lt=now - _stale_after()))


def _under_way(request: ResetRequest, now: datetime) -> bool:
    """Whether a queued or running request can still be carried out by the task that
    holds it: queued (or queued again) lately, or running and not yet stale."""
    if request.status == ResetRequest.Status.QUEUED:
        return request.queued_at >= now - _stale_after()
    return request.started_at is not None and request.started_at >= now - _stale_after()


def reset_request_create(
    *, blink_user: BlinkUser, actor: Actor, channel: str, kind: str = ResetRequest.Kind.RESET,
    opted_out: bool | None = None,
) -> ResetRequest:
    """Record a reset (or unlock) for an Active Blink user and queue it on the directory's
    worker queue once the transaction commits.

    A request of the same kind still under way for the user is returned instead of a
    second one, marked ``joined`` (a double click or a repeated text must not make two
    passwords). When the
    task cannot be published the request is recorded failed and the broker's error is
    raised (``PUBLISH_ERRORS``) to the caller, which should say so. ``ResetRefused`` is
    raised before anything is written: for a user who cannot be reset, and for one whose
    phone texted STOP (a password nobody can be told would only lock them out).
    ``opted_out``: whether the user's phone texted STOP, when the caller already looked.
    """
    if not blink_user.is_active():
        raise ResetRefused("Only Active Blink users can be reset: this user has not "
                           "finished activation.")
    if blink_user.client.is_archived():
        raise ResetRefused("This client is archived; restore it to reset its users.")
    if opted_out is None:
        opted_out = OptOut.objects.filter(phone=blink_user.phone).exists()
    if opted_out:
        raise ResetRefused(STOPPED_REASON)
    try:
        connection = _account(blink_user).connection
    except DirectoryError as error:
        raise ResetRefused(error.message) from None
    return _request_record(blink_user=blink_user, actor=actor, channel=channel, kind=kind,
                           queue=connection.queue)


# Inside a caller's transaction (an inbound text's) no savepoint: nothing here is meant to
# fail on its own, and a database error aborts the caller's transaction anyway.
@transaction.atomic(savepoint=False)
def _request_record(*, blink_user: BlinkUser, actor: Actor, channel: str, kind: str,
                    queue: str) -> ResetRequest:
    # One request at a time per user: concurrent callers wait here for each other.
    BlinkUser.objects.select_for_update().filter(pk=blink_user.pk).first()
    now = timezone.now()
    # Locked too: a late worker claiming one of them waits, and then finds it replaced.
    unfinished = list(ResetRequest.objects.select_for_update().filter(
        blink_user=blink_user, kind=kind,
        status__in=[ResetRequest.Status.QUEUED, ResetRequest.Status.RUNNING],
    ).order_by("-id"))
    for pending in unfinished:
        if _under_way(pending, now):
            log.info("%s request %s is under way; not making another", kind, pending.pk)
            pending.joined = True
            return pending
    if unfinished:
        # Left by a worker that never took them (or died): this request replaces them,
        # and their tasks, should they still come, find nothing to do.
        # (Each only if no worker claimed it meanwhile.)
        stale = now - _stale_after()
        ResetRequest.objects.filter(
            Q(status=ResetRequest.Status.QUEUED, queued_at__lt=stale)
            | Q(status=ResetRequest.Status.RUNNING, started_at__lt=stale),
            pk__in=[r.pk for r in unfinished],
        ).update(status=ResetRequest.Status.FAILED, reason=SUPERSEDED_REASON,
                 sealed_password="", finished_at=now)
    request = ResetRequest.objects.create(
        blink_user=blink_user, kind=kind, channel=channel, requested_label=actor.label[:150],
        requested_by=actor.user if actor.user is not None and actor.user.pk else None,
        ip_address=actor.ip,
    )
    audit_record(company=blink_user.client.company, client=blink_user.client, actor=actor,
                 action=f"{kind}.request", target=blink_user.username,
                 detail={"channel": channel, "request": request.pk})
    transaction.on_commit(lambda: _publish(request, queue=queue))
    return request


def _publish(request: ResetRequest, *, queue: str) -> None:
    """Queue the request's task on ``queue``. A worker that serves that queue itself (a
    texted RESET, handled on the ``sms`` worker of a cloud directory) makes the first run
    here and now, and queues the task only as a backstop, due once the request would look
    stale: if this process dies mid-run, that task finishes the request, and otherwise it
    finds it done and stops."""
    from blink.tasks import reset_run as task

    here = runs_here(queue)
    try:
        if here:
            task.apply_async((request.pk,), queue=queue,
                             countdown=_stale_after().total_seconds() + 1)
        else:
            task.apply_async((request.pk,), queue=queue)
    except PUBLISH_ERRORS as error:
        # Committed but never queued: end it now rather than leave it "queued" for ever.
        blink_user = request.blink_user
        ResetRequest.objects.filter(pk=request.pk, status=ResetRequest.Status.QUEUED).update(
            status=ResetRequest.Status.FAILED, reason=UNQUEUED_REASON,
            finished_at=timezone.now(),
        )
        audit_record(company=blink_user.client.company, client=blink_user.client,
                     actor=Actor(label=request.requested_label, ip=request.ip_address),
                     action=f"{request.kind}.run", target=blink_user.username,
                     result=AuditEvent.Result.FAILED,
                     detail={"reason": UNQUEUED_REASON, "request": request.pk})
        log.warning("%s request %s not queued: the task broker is unavailable (%s)",
                    request.kind, request.pk, type(error).__name__)
        raise
    if here:
        _run_here(request)


def _run_here(request: ResetRequest) -> None:
    try:
        reset_run(request_id=request.pk, made=request)
    except Exception:
        # The database went away mid-run, say. Nothing is lost: the backstop task
        # claims the request once it is stale.
        log.exception("request %s stopped in this worker; its queued task takes over",
                      request.pk)


def _claim(request_id: int) -> bool:
    now = timezone.now()
    claimed = ResetRequest.objects.filter(_claimable(now), pk=request_id).update(
        status=ResetRequest.Status.RUNNING, started_at=now)
    return claimed == 1


def _run_again_when_stale(request_id: int) -> None:
    """A task delivered again while its request still looks running — Celery hands a task
    straight back when the worker running it was killed — comes back once the request is
    stale and can be claimed; dropping it would leave the request "resetting" for ever."""
    from blink.tasks import reset_run as task

    if task.app.conf.task_always_eager:
        return  # in-process: the run that holds the request is this process's own
    request = ResetRequest.objects.filter(
        pk=request_id, status=ResetRequest.Status.RUNNING, started_at__isnull=False,
    ).select_related("blink_user__connection").first()
    if request is None or request.started_at is None:
        return
    wait = request.started_at + _stale_after() - timezone.now()
    task.apply_async((request_id,), queue=_queue_again(request.blink_user),
                     countdown=max(wait.total_seconds(), 0) + 1)
    log.info("%s request %s is running elsewhere; checking again in %.0f s", request.kind,
             request_id, max(wait.total_seconds(), 0) + 1)


def _text_resume(request_id: int) -> None:
    """Queue the text of a sent request that nothing has tried to hand over yet: the run
    that sent it died between its last commit and the provider (see the module's
    docstring). A text that is also queued elsewhere still goes once (the send's claim)."""
    message_id = ResetRequest.objects.filter(
        pk=request_id, status=ResetRequest.Status.SENT,
        message__status=Message.Status.QUEUED, message__attempts=0,
    ).values_list("message_id", flat=True).first()
    if message_id is not None:
        log.info("request %s is sent but its sms %s was never handed over; queueing it",
                 request_id, message_id)
        message_queue(message_id=message_id)


def _finish_failed(request: ResetRequest, reason: str) -> None:
    blink_user = request.blink_user
    company = blink_user.client.company
    with transaction.atomic():
        audit_record(company=company, client=blink_user.client,
                     actor=Actor(label=request.requested_label, ip=request.ip_address),
                     action=f"{request.kind}.run", target=blink_user.username,
                     result=AuditEvent.Result.FAILED, detail={"reason": reason[:300],
                                                              "request": request.pk})
        contact = company.support_email or "your IT support"
        what = "reset your password" if request.kind == ResetRequest.Kind.RESET else \
            "unlock your account"
        message = sms_send(company=company, phone=blink_user.phone, blink_user=blink_user,
                           kind=f"{request.kind}_failed",
                           text=f"Blink could not {what} just now. Please contact {contact}.",
                           deliver_here=True)
        # The text that tells the user, so the console can say whether it reached them.
        ResetRequest.objects.filter(pk=request.pk).update(
            status=ResetRequest.Status.FAILED, reason=reason[:500], sealed_password="",
            message=message, finished_at=timezone.now(),
        )
    log.warning("%s request %s failed: %s", request.kind, request.pk, reason)


def _emails_queue(request: ResetRequest) -> None:
    """After a reset or unlock, queue its emails (``reset_emails_send``) for a worker on
    the default queue, so an on-premises directory worker needs no mail server. The
    emails are a courtesy: a broker that will not take them costs only them."""
    from blink.tasks import reset_emails_send

    company = request.blink_user.client.company
    if not (request.blink_user.email
            or (company.notify_support_on_reset and company.support_email)):
        return
    try:
        reset_emails_send.delay(request.pk)
    except PUBLISH_ERRORS as error:
        log.warning("the emails after %s request %s were not queued (%s)", request.kind,
                    request.pk, type(error).__name__)


def _asked_by(request: ResetRequest) -> str:
    """Who asked, in the user's words: never an admin's name."""
    if request.channel == ResetRequest.Channel.SMS:
        return f"by a text from your phone {request.blink_user.masked_phone()}"
    if request.channel == ResetRequest.Channel.APP:
        return "in the Blink app"
    return "by your IT support, in the Blink console"


def _confirmation(request: ResetRequest, *, when: str) -> EmailMultiAlternatives:
    """The user's email that their reset or unlock was done, branded like the activation
    email."""
    blink_user = request.blink_user
    company = blink_user.client.company
    rendered = branded_email_render(
        "reset_done", company=company, reset=request.kind == ResetRequest.Kind.RESET,
        first_name=blink_user.first_name(), username=blink_user.username, when=when,
        asked_by=_asked_by(request))
    email = EmailMultiAlternatives(
        rendered.subject, rendered.text, to=[blink_user.email],
        reply_to=[company.support_email] if company.support_email else None)
    email.attach_alternative(rendered.html, "text/html")
    return email


def reset_emails_send(*, request_id: int) -> int:
    """Email the outcome of a sent reset or unlock, never its password: a confirmation to
    the user (when they have an email address), and a notice to the company's support
    address when the company asks for one. Returns how many were sent."""
    request = (ResetRequest.objects.select_related("blink_user__client__company")
               .filter(pk=request_id, status=ResetRequest.Status.SENT).first())
    if request is None or request.finished_at is None:
        return 0
    blink_user = request.blink_user
    company = blink_user.client.company
    when = f"{request.finished_at:%Y-%m-%d %H:%M} UTC"
    reset = request.kind == ResetRequest.Kind.RESET
    what = "password was reset" if reset else "account was unlocked"
    support = company.support_email
    emails: list[EmailMessage] = []
    if blink_user.email:
        emails.append(_confirmation(request, when=when))
    if company.notify_support_on_reset and support:
        emails.append(EmailMessage(
            f"Blink: {blink_user}'s {what}",
            f"{blink_user} ({blink_user.username}) of {blink_user.client.name}: {what} at "
            f"{when}, asked by {request.requested_label} ({request.get_channel_display()}).",
            to=[support],
        ))
    sent = 0
    with get_connection() as connection:
        # One at a time: a mail server refusing the user's address must not keep the
        # notice from support, nor the other way round.
        for email in emails:
            try:
                sent += connection.send_messages([email]) or 0
            except (smtplib.SMTPException, OSError) as error:
                log.warning("an email after %s request %s could not be sent (%s)",
                            request.kind, request.pk, type(error).__name__)
    if sent:
        log.info("%s emails sent after %s request %s", sent, request.kind, request.pk)
    return sent


def reset_run(*, request_id: int, made: ResetRequest | None = None) -> None:
    """Carry out a queued reset or unlock (the task body); see the module's docstring.

    ``made``: the request as the process that just made it holds it (with its user's
    client, company and connection), for the first run there; it is not read again.
    """
    if not _claim(request_id):
        _text_resume(request_id)
        _run_again_when_stale(request_id)
        return
    request = made if made is not None and made.pk == request_id else (
        ResetRequest.objects.select_related("blink_user__client__company",
                                            "blink_user__connection").get(pk=request_id))
    blink_user = request.blink_user
    if request.directory_done_at is None and OptOut.objects.filter(
            phone=blink_user.phone).exists():
        # STOP came after the request was made (a worker that was behind, say): a password
        # nobody can be told would only lock the user out.
        _finish_failed(request, STOPPED_REASON)
        return
    secret = ""
    try:
        # An Entra user synced from AD is reset in AD, as the account it is synced from.
        account = _account(blink_user)
        directory = directory_for(account.connection)
        if request.kind == ResetRequest.Kind.UNLOCK:
            if request.directory_done_at is None:
                directory.unlock(account.object_id)
            text = (f"Your {blink_user.client.company.name} account {blink_user.username} is "
                    "unlocked. Your password has not changed.")
            secret = ""
        else:
            if request.sealed_password:
                secret = secrets_decrypt(request.sealed_password)["password"]
            else:
                policy = directory.password_policy(account.object_id)
                secret = temporary_password(
                    policy, length=blink_user.client.temp_password_length,
                    avoid=(blink_user.username, str(blink_user)),
                )
                ResetRequest.objects.filter(pk=request.pk).update(
                    sealed_password=secrets_encrypt({"password": secret}))
            if request.directory_done_at is None:
                directory.reset_password(account.object_id, secret, must_change=True,
                                         unlock=blink_user.client.unlock_on_reset)
            text = (f"Your temporary password for {blink_user.username} is:\n{{secret}}\n"
                    "Sign in to Windows with it; you will be asked to choose a new one.")
        ResetRequest.objects.filter(pk=request.pk).update(directory_done_at=timezone.now())
    except DirectoryError as error:
        _finish_failed(request, error.message)
        return
    except SecretsUnreadable as error:
        _finish_failed(request, str(error))
        return
    except Exception as error:
        # A bug, or the worker's time limit on a hung server: end the request rather than
        # leave it "resetting" for ever. The traceback is logged without the password.
        log.error("%s request %s stopped by an unexpected error:\n%s", request.kind,
                  request.pk, traceback_redacted(error, secret))
        _finish_failed(request, f"Blink hit an unexpected error (request {request.pk}) and "
                                "stopped. Try again; if it happens again, see the worker's log.")
        return
    now = timezone.now()
    with transaction.atomic():
        # Someone is waiting for this text: a worker that also serves the sms queue sends
        # it straight after the commit; an on-premises directory worker still queues it.
        message = sms_send(company=blink_user.client.company, phone=blink_user.phone,
                           blink_user=blink_user, kind=request.kind, text=text, secret=secret,
                           deliver_here=True)
        ResetRequest.objects.filter(pk=request.pk).update(
            status=ResetRequest.Status.SENT, message=message, sealed_password="",
            finished_at=now,
        )
        updates: dict[str, datetime | None] = {}
        if request.kind == ResetRequest.Kind.RESET:
            updates["last_reset_at"] = now
        if request.kind == ResetRequest.Kind.UNLOCK or blink_user.client.unlock_on_reset:
            updates["locked_since"] = None
        BlinkUser.objects.filter(pk=blink_user.pk).update(**updates)
        audit_record(company=blink_user.client.company, client=blink_user.client,
                     actor=Actor(label=request.requested_label, ip=request.ip_address),
                     action=f"{request.kind}.run", target=blink_user.username,
                     detail={"request": request.pk, "channel": request.channel})
    _emails_queue(request)
    log.info("%s request %s done for blink user %s", request.kind, request.pk, blink_user.pk)


def resets_requeue() -> int:
    """Beat's sweep, every minute: queue again the requests whose task looks lost (still
    waiting ``REQUEUE_AFTER`` after it was queued, or left running by a dead worker), and
    fail, telling the user, those not carried out within ``GIVE_UP_AFTER``, except one
    whose password the directory already took: that one is texted here. Returns how many
    were queued again. The tasks' claim keeps a request from running twice."""
    from blink.tasks import reset_run as task

    now = timezone.now()
    unfinished = ResetRequest.objects.filter(
        status__in=[ResetRequest.Status.QUEUED, ResetRequest.Status.RUNNING],
    ).select_related("blink_user__client__company", "blink_user__connection")
    for request in unfinished.filter(created_at__lt=now - GIVE_UP_AFTER)[:100]:
        if request.directory_done_at is not None:
            # The directory holds the new password already: text it, late as it is, rather
            # than leave an account whose password nobody knows (no directory call needed).
            reset_run(request_id=request.pk)
        elif _claim(request.pk):  # not while a worker is carrying it out
            _finish_failed(request, EXPIRED_REASON)
    lost = unfinished.filter(_claimable(now), created_at__gte=now - GIVE_UP_AFTER,
                             queued_at__lt=now - REQUEUE_AFTER)
    requeued = 0
    for request in lost[:500]:
        if not ResetRequest.objects.filter(pk=request.pk, queued_at=request.queued_at).update(
                queued_at=now):
            continue  # another sweep took it
        try:
            task.apply_async((request.pk,), queue=_queue_again(request.blink_user))
        except PUBLISH_ERRORS as error:
            log.warning("could not queue %s request %s again: the task broker is "
                        "unavailable (%s)", request.kind, request.pk, type(error).__name__)
            break
        requeued += 1
    if requeued:
        log.info("queued %s reset and unlock requests again", requeued)
    return requeued
