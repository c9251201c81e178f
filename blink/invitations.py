"""Making directory users Blink users, and the activation email that invites them."""

from __future__ import annotations

import hashlib
import logging
import secrets
import smtplib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from blink.audit import Actor, audit_record, audit_record_many
from blink.emails import activation_email_render, branded_email_render
from blink.models import BlinkUser
from clients.models import Branding, Client
from directory.models import Entry

log = logging.getLogger(__name__)

# A claimed email send older than this was lost with its worker and may be sent again.
SEND_STALE = timedelta(minutes=5)


def activation_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class InviteResult:
    invited: list[BlinkUser] = field(default_factory=list)
    needs_email: list[BlinkUser] = field(default_factory=list)
    # (name, why) for every ticked user that was not added.
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _send_on_commit(pks: list[int]) -> None:
    """Queue the activation email task of each of these users once the transaction commits."""
    from blink.tasks import activation_email_send

    def send_all() -> None:
        for pk in pks:
            activation_email_send.delay(pk)

    transaction.on_commit(send_all)


def _queue_activation_emails(pks: list[int]) -> None:
    BlinkUser.objects.filter(pk__in=pks).update(
        activation_email_status=BlinkUser.EmailStatus.QUEUED, activation_email_error=""
    )
    _send_on_commit(pks)


class ClientArchived(Exception):
    """The user's client is archived: no activation email goes out."""

    message = "This client is archived; restore it to send activation emails again."


@transaction.atomic
def blink_user_invite(*, client: Client, actor: Actor, object_ids: Iterable[str]) -> InviteResult:
    """Make these directory users (snapshot ids) Blink users and email each an invitation.

    Protected, disabled and already-added users are skipped with the reason;
    users without an email address are added as "needs email". Ticking a whole
    OU can mean thousands of users, so the writes are bulk: a handful of queries
    whatever the number.
    """
    result = InviteResult()
    wanted = set(object_ids)
    entries = Entry.objects.filter(connection__client=client, kind=Entry.Kind.USER,
                                   object_id__in=wanted).order_by("name")
    existing = set(BlinkUser.objects.filter(client=client, object_id__in=wanted)
                   .values_list("connection_id", "object_id"))
    new_users = []
    for entry in entries:
        if entry.protected:
            result.skipped.append((entry.name, "a privileged account; Blink refuses those"))
        elif not entry.enabled:
            result.skipped.append((entry.name, "disabled in the directory"))
        elif (entry.connection_id, entry.object_id) in existing:
            result.skipped.append((entry.name, "already a Blink user"))
        else:
            new_users.append(BlinkUser(
                client=client, connection_id=entry.connection_id, object_id=entry.object_id,
                username=entry.username, display_name=entry.name, given_name=entry.given_name,
                email=entry.email,
                status=BlinkUser.Status.INVITED if entry.email else BlinkUser.Status.NEEDS_EMAIL,
                activation_email_status=(BlinkUser.EmailStatus.QUEUED if entry.email
                                         else BlinkUser.EmailStatus.NONE),
            ))
    created = BlinkUser.objects.bulk_create(new_users, batch_size=500)
    audit_record_many(company=client.company, actor=actor, client=client,
                      action="blink_user.invite",
                      targets=[(u.username, {"status": u.status}) for u in created])
    for blink_user in created:
        (result.invited if blink_user.email else result.needs_email).append(blink_user)
    if result.invited:
        _send_on_commit([u.pk for u in result.invited])  # created queued
    return result


@transaction.atomic
def blink_user_reinvite(*, blink_user: BlinkUser, actor: Actor,
                        only: Iterable[str] | None = None) -> BlinkUser | None:
    """Start activation over ("Reset User"): the old link dies, the phone must be verified
    again, and a new activation email goes out. ``ClientArchived`` for an archived client's
    user, before anything changes.

    The user is locked and read afresh. ``only``: the statuses they must still be in, else
    nothing changes and None is returned, as for a user removed meanwhile (Resend
    activation must not undo an activation that finished while the admin looked).
    """
    if blink_user.client.is_archived():
        raise ClientArchived
    fresh = (BlinkUser.objects.select_for_update(of=("self",))
             .select_related("client__company").filter(pk=blink_user.pk).first())
    if fresh is None or (only is not None and fresh.status not in only):
        return None
    blink_user = fresh
    blink_user.activation_token_hash = None
    blink_user.activation_expires_at = None
    blink_user.phone = None
    blink_user.pending_phone = None
    blink_user.activated_at = None
    blink_user.status = (BlinkUser.Status.INVITED if blink_user.email
                         else BlinkUser.Status.NEEDS_EMAIL)
    blink_user.save(update_fields=["activation_token_hash", "activation_expires_at", "phone",
                                   "pending_phone", "activated_at", "status"])
    audit_record(company=blink_user.client.company, actor=actor, client=blink_user.client,
                 action="blink_user.reinvite", target=blink_user.username)
    if blink_user.email:
        _queue_activation_emails([blink_user.pk])
    return blink_user


class PhoneUnavailable(Exception):
    """The number is already a Blink user's (or otherwise cannot be used)."""


class PhoneNeedsProof(Exception):
    """An Active user's number changes only when its owner proves they hold the new one
    (Reset User, then activation's texted code), never because an admin typed it."""


@transaction.atomic
def blink_user_update(
    *, blink_user: BlinkUser, actor: Actor, email: str, phone: str | None
) -> BlinkUser:
    """Change a Blink user's email and, optionally, the phone of a user not yet Active
    (a placeholder: activation asks for the number and checks it with a code). A user who
    needed an email is invited as soon as they have one, unless their client is archived
    (its activation links lead nowhere; Resend after a restore invites them).

    ``PhoneNeedsProof`` for a new number on an Active user, before anything changes: their
    passwords go to that phone, so only a number its owner confirmed will do.
    """
    # Locked and read afresh: the user may be finishing activation at this very moment.
    blink_user = (BlinkUser.objects.select_for_update(of=("self",))
                  .select_related("client__company").get(pk=blink_user.pk))
    if (phone is not None and blink_user.status == BlinkUser.Status.ACTIVE
            and phone != str(blink_user.phone or "")):
        raise PhoneNeedsProof
    before = {"email": blink_user.email, "phone": blink_user.masked_phone()}
    blink_user.email = email
    if phone is not None:
        blink_user.phone = phone or None
    needs_invite = (blink_user.status == BlinkUser.Status.NEEDS_EMAIL and bool(email)
                    and not blink_user.client.is_archived())
    if needs_invite:
        blink_user.status = BlinkUser.Status.INVITED
    try:
        with transaction.atomic():
            blink_user.save()
    except IntegrityError:
        raise PhoneUnavailable from None
    changed = {key: [before[key], value] for key, value in
               {"email": blink_user.email, "phone": blink_user.masked_phone()}.items()
               if before[key] != value}
    if changed:
        audit_record(company=blink_user.client.company, actor=actor, client=blink_user.client,
                     action="blink_user.update", target=blink_user.username,
                     detail={"changed": changed})
    if needs_invite:
        _queue_activation_emails([blink_user.pk])
    return blink_user


class PinAskRefused(Exception):
    """The user cannot be asked for a PIN; ``message`` says why, for the admin."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@transaction.atomic
def blink_user_pin_ask(*, blink_user: BlinkUser, actor: Actor) -> None:
    """Ask for a PIN: email an Active user who has none, on a client whose SMS reset needs
    one, a link to choose it. They keep their phone and stay Active meanwhile; their
    texted resets wait for the PIN."""
    if blink_user.client.is_archived():
        raise PinAskRefused("This client is archived; restore it first.")
    if not blink_user.pin_missing():
        raise PinAskRefused(f"{blink_user} does not need a PIN: only Active users of a client "
                            "whose SMS reset needs one, who have none yet, do.")
    if not blink_user.email:
        raise PinAskRefused(f"{blink_user} has no email address. Edit them to add one, then "
                            "ask again.")
    audit_record(company=blink_user.client.company, actor=actor, client=blink_user.client,
                 action="blink_user.pin_ask", target=blink_user.username)
    _queue_activation_emails([blink_user.pk])


@transaction.atomic
def client_pin_ask(*, client: Client, actor: Actor) -> int:
    """Ask for a PIN, at once, every Active user of ``client`` who needs one and has an
    email address (``blink_user_pin_ask`` for each, in a few queries whatever their
    number). Returns how many were asked."""
    if not client.sms_reset_needs_pin or client.is_archived():
        return 0
    users = list(BlinkUser.objects.select_for_update()
                 .filter(client=client, status=BlinkUser.Status.ACTIVE, pin_hash="")
                 .exclude(email="").order_by("pk"))
    if not users:
        return 0
    audit_record_many(company=client.company, actor=actor, client=client,
                      action="blink_user.pin_ask", targets=[(u.username, {}) for u in users])
    _queue_activation_emails([u.pk for u in users])
    return len(users)


@transaction.atomic
def blink_user_remove(*, blink_user: BlinkUser, actor: Actor) -> None:
    """Take Blink away from a user. The directory account is untouched."""
    audit_record(company=blink_user.client.company, actor=actor, client=blink_user.client,
                 action="blink_user.remove", target=blink_user.username)
    blink_user.delete()


def activation_email_send(*, blink_user_id: int) -> None:
    """Mint the activation link and email it (run by a task).

    The token is made here, in the worker, so it never travels through the broker;
    only its hash is stored. Sending again replaces the link, so an older email's
    link stops working.
    """
    now = timezone.now()
    claimable = Q(activation_email_status=BlinkUser.EmailStatus.QUEUED) | Q(
        activation_email_status=BlinkUser.EmailStatus.SENDING,
        activation_email_sent_at__lt=now - SEND_STALE,
    )
    claimed = BlinkUser.objects.filter(claimable, pk=blink_user_id).exclude(email="").update(
        activation_email_status=BlinkUser.EmailStatus.SENDING, activation_email_sent_at=now
    )
    if claimed != 1:
        return
    blink_user = BlinkUser.objects.select_related("client__company").get(pk=blink_user_id)
    company = blink_user.client.company
    if blink_user.is_active() and not blink_user.pin_missing():
        # Asked for a PIN, then chose one from an earlier link (or the client stopped
        # asking for PINs) before this ran: nothing to send.
        BlinkUser.objects.filter(pk=blink_user.pk).update(
            activation_email_status=BlinkUser.EmailStatus.SENT)
        return
    token = secrets.token_urlsafe(32)  # 256 bits
    BlinkUser.objects.filter(pk=blink_user.pk).update(
        activation_token_hash=activation_token_hash(token),
        activation_expires_at=now + timedelta(hours=settings.BLINK_ACTIVATION_HOURS),
    )
    link = company.link(f"/activate/{token}/")
    if blink_user.is_active():  # "Ask for a PIN"
        rendered = branded_email_render(
            "pin_setup", company=company, link=link, first_name=blink_user.first_name(),
            masked_phone=blink_user.masked_phone())
    else:
        branding, _ = Branding.objects.get_or_create(company=company)
        logo = company.link(branding.logo_url()) if branding.has_logo() else ""
        rendered = activation_email_render(
            company=company, branding=branding, first_name=blink_user.first_name(),
            full_name=str(blink_user), link=link, logo_url=logo,
        )
    email = EmailMultiAlternatives(rendered.subject, rendered.text, to=[blink_user.email],
                                   reply_to=[company.support_email] if company.support_email
                                   else None)
    email.attach_alternative(rendered.html, "text/html")
    try:
        email.send()
    except (smtplib.SMTPException, OSError) as exc:
        reason = f"The mail server refused or could not be reached ({type(exc).__name__})."
        log.warning("activation email for blink user %s failed: %s", blink_user.pk, reason)
        BlinkUser.objects.filter(pk=blink_user.pk).update(
            activation_email_status=BlinkUser.EmailStatus.FAILED,
            activation_email_error=reason, activation_token_hash=None,
        )
        return
    BlinkUser.objects.filter(pk=blink_user.pk).update(
        activation_email_status=BlinkUser.EmailStatus.SENT, activation_email_sent_at=now
    )
    log.info("activation email sent for blink user %s", blink_user.pk)
