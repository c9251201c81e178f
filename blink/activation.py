"""The activation flow: link → mobile number → SMS code → (PIN) → active.

The browser's session remembers which Blink user is activating; nothing the
browser posts names a user, a phone it did not type, or a step it skipped. Clients
whose SMS reset needs a PIN add a step after the code: the user chooses a PIN of 4 to 6 digits,
kept only as a password hash, and becomes active with it.

An Active user of such a client who has no PIN (they activated before the client asked for
one) is sent a link of the same kind ("Ask for a PIN" in the console): it leads to the code,
texted to the phone they already confirmed, then to the PIN, and changes nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise

import phonenumbers
from django.contrib.auth.hashers import make_password
from django.db import IntegrityError, transaction
from django.utils import timezone
from phonenumber_field.phonenumber import PhoneNumber

from blink.audit import Actor, audit_record
from blink.invitations import activation_token_hash
from blink.models import AuditEvent, BlinkUser, phone_mask
from sms.codes import (
    CODE_LIFETIME,
    SelfServicePaused,
    verification_code_check,
    verification_code_issue,
)
from sms.models import VerificationCode
from sms.services import company_sms_number, sms_send

log = logging.getLogger(__name__)

ACTIVATING = (BlinkUser.Status.INVITED, BlinkUser.Status.VERIFYING_PHONE)
# Who a live link may belong to: a user activating, or an Active one who still has a PIN to
# choose (``_link_holder``).
LINK_HOLDERS = (*ACTIVATING, BlinkUser.Status.ACTIVE)
# Number types that can receive SMS, where the library can tell.
TEXTABLE = {
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    phonenumbers.PhoneNumberType.UNKNOWN,
}


class ActivationRefused(Exception):
    """A step that cannot go ahead; ``message`` is the sentence to show the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ActivationLinkDead(ActivationRefused):
    """The session's link died while the user was on a step (they were removed, activated
    from another tab, or given a new link): answered like any other dead link."""

    def __init__(self) -> None:
        super().__init__("This link doesn't work any more.")


def _link_holder(blink_user: BlinkUser | None) -> BlinkUser | None:
    """``blink_user``, unless an Active user with no PIN to choose: whatever link they hold
    (a PIN link they have since used another copy of, an old activation link), it has
    nothing left to do."""
    if blink_user is not None and blink_user.is_active() and not blink_user.pin_missing():
        return None
    return blink_user


def activation_user_for_token(token: str) -> BlinkUser | None:
    """The Blink user whose live activation link this is, or None (unknown, used, expired,
    or of an archived client)."""
    if not token or len(token) > 100:
        return None
    blink_user = (
        BlinkUser.objects.select_related("client__company")
        .filter(activation_token_hash=activation_token_hash(token), status__in=LINK_HOLDERS,
                client__archived_at__isnull=True)
        .first()
    )
    if blink_user is None or not blink_user.activation_expires_at:
        return None
    if blink_user.activation_expires_at <= timezone.now():
        return None
    return _link_holder(blink_user)


def activation_user_for_session(*, user_id: int, token_hash: str) -> BlinkUser | None:
    """The Blink user a browser session is activating, while its link is still live."""
    blink_user = (
        BlinkUser.objects.select_related("client__company")
        .filter(pk=user_id, activation_token_hash=token_hash, status__in=LINK_HOLDERS,
                activation_expires_at__gt=timezone.now(), client__archived_at__isnull=True)
        .first()
    )
    return _link_holder(blink_user)


def _user_actor(blink_user: BlinkUser, ip: str | None) -> Actor:
    """The user acting on their own activation, as the audit trail names them."""
    return Actor(label=f"{blink_user.username} (activation)", ip=ip)


def _audit(blink_user: BlinkUser, ip: str | None, action: str, result: str,
           **detail: str) -> None:
    audit_record(company=blink_user.client.company, client=blink_user.client,
                 actor=_user_actor(blink_user, ip), action=action,
                 target=blink_user.username, result=result, detail=detail)


def is_textable(number: PhoneNumber) -> bool:
    return phonenumbers.number_type(number) in TEXTABLE


def _phone_taken(blink_user: BlinkUser, number: PhoneNumber) -> bool:
    return BlinkUser.objects.filter(phone=number).exclude(pk=blink_user.pk).exists()


PHONE_REFUSED = ("This number can't be used for Blink. Enter another mobile number, or ask "
                 "your IT support for help.")
CODE_REFUSED = ("That code is wrong or has expired. Check the latest text from Blink, or "
                "send a new code.")


@contextmanager
def _code_sending(blink_user: BlinkUser, *, statuses: tuple[str, ...],
                  ip: str | None) -> Iterator[BlinkUser]:
    """A transaction that texts ``blink_user`` a code, with their row locked and read
    afresh (the page read it before any other request could commit).

    Raises ``ActivationLinkDead`` when the user is gone, in none of ``statuses``, or no
    longer holds the session's link, and ``SelfServicePaused`` (audited) while paused.
    """
    try:
        with transaction.atomic():
            fresh = (BlinkUser.objects.select_for_update(of=("self",))
                     .select_related("client__company")
                     .filter(pk=blink_user.pk, status__in=statuses,
                             activation_token_hash=blink_user.activation_token_hash)
                     .first())
            if fresh is None:
                raise ActivationLinkDead
            if fresh.paused_until and fresh.paused_until > timezone.now():
                raise SelfServicePaused(fresh.paused_until)
            yield fresh
    except SelfServicePaused:
        # Outside the transaction: the refusal is recorded though nothing else is.
        _audit(blink_user, ip, "activation.paused", AuditEvent.Result.REFUSED,
               reason="paused: no code sent")
        raise


def activation_phone_submit(*, blink_user: BlinkUser, number: PhoneNumber,
                            ip: str | None) -> None:
    """Remember the number the user typed and text it a code.

    A number that belongs to another Blink user is refused with the same sentence
    as any other unusable number, and nothing changes. ``ActivationLinkDead`` and
    ``SelfServicePaused`` as for ``_code_sending``: an Active user is never sent back
    to verifying a phone.
    """
    if not is_textable(number) or _phone_taken(blink_user, number):
        _audit(blink_user, ip, "activation.phone", AuditEvent.Result.REFUSED,
               phone=phone_mask(str(number)),
               reason="in use" if is_textable(number) else "cannot receive SMS")
        raise ActivationRefused(PHONE_REFUSED)
    with _code_sending(blink_user, statuses=ACTIVATING, ip=ip) as blink_user:
        blink_user.pending_phone = number
        blink_user.status = BlinkUser.Status.VERIFYING_PHONE
        blink_user.save(update_fields=["pending_phone", "status"])
        verification_code_issue(blink_user=blink_user, phone=str(number), ip=ip)
        _audit(blink_user, ip, "activation.code_sent", AuditEvent.Result.OK,
               phone=phone_mask(str(number)))
    log.info("activation code sent for blink user %s to %s", blink_user.pk,
             phone_mask(str(number)))


def pin_code_send(*, blink_user: BlinkUser, ip: str | None) -> None:
    """Choosing a PIN (an Active user): text a code to the phone they already confirmed.
    The number cannot be changed here: a new one needs Reset User. ``ActivationLinkDead``
    and ``SelfServicePaused`` as for ``_code_sending``."""
    with _code_sending(blink_user, statuses=(BlinkUser.Status.ACTIVE,), ip=ip) as blink_user:
        if not blink_user.pin_missing() or not blink_user.phone:
            raise ActivationLinkDead
        blink_user.pending_phone = blink_user.phone
        blink_user.save(update_fields=["pending_phone"])
        verification_code_issue(blink_user=blink_user, phone=str(blink_user.phone), ip=ip)
        _audit(blink_user, ip, "activation.code_sent", AuditEvent.Result.OK,
               phone=blink_user.masked_phone(), next="choose a PIN")


def activation_code_resend(*, blink_user: BlinkUser, ip: str | None) -> None:
    """Text a fresh code to the number being verified; the previous code stops working.
    One choosing a PIN gets it on the phone they have now. ``ActivationLinkDead`` and
    ``SelfServicePaused`` as for ``_code_sending``."""
    if blink_user.is_active():
        pin_code_send(blink_user=blink_user, ip=ip)
        return
    with _code_sending(blink_user, statuses=ACTIVATING, ip=ip) as blink_user:
        # The number as it is now: the user may have typed a new one since this page
        # loaded, and only the number being verified may get a code.
        if not blink_user.pending_phone:
            raise ActivationRefused("Enter your mobile number first.")
        verification_code_issue(blink_user=blink_user, phone=str(blink_user.pending_phone),
                                ip=ip)
        _audit(blink_user, ip, "activation.code_sent", AuditEvent.Result.OK,
               phone=phone_mask(str(blink_user.pending_phone)), resend="yes")


@dataclass(frozen=True)
class Activated:
    blink_user: BlinkUser
    sms_number: str


@dataclass(frozen=True)
class CodeVerified:
    """The code was right and the client wants a PIN: the PIN step finishes activation.
    ``code_id`` is the consumed code, the proof the PIN step asks for."""

    code_id: int


def activation_code_submit(*, blink_user: BlinkUser, code: str,
                           ip: str | None) -> Activated | CodeVerified:
    """Check the SMS code; for most clients, finish activation with it: the number becomes
    the user's, the link dies, and a confirmation SMS goes out. For clients whose SMS reset
    needs a PIN, answer ``CodeVerified`` and leave the finish to ``activation_pin_submit``.

    Raises ``ActivationRefused`` for a wrong or expired code, or one texted to another
    number than the one being verified, and ``sms.codes.SelfServicePaused`` after too many
    wrong codes.
    """
    if not blink_user.pending_phone:
        raise ActivationRefused("Enter your mobile number first.")
    # Not inside a transaction of ours: a wrong code's count must stick when we refuse.
    try:
        checked = verification_code_check(blink_user=blink_user, code=code)
    except SelfServicePaused:
        _audit(blink_user, ip, "activation.paused", AuditEvent.Result.REFUSED,
               reason="10 wrong codes in 24 hours")
        raise
    # A code proves only the number it went to; the finish checks the locked row against
    # the same number, so a number changed meanwhile is never the one made Active.
    if checked is None or checked.phone != blink_user.pending_phone:
        _audit(blink_user, ip, "activation.code", AuditEvent.Result.FAILED,
               reason="wrong or expired code" if checked is None else "code for another number")
        raise ActivationRefused(CODE_REFUSED)
    if blink_user.client.sms_reset_needs_pin:
        _audit(blink_user, ip, "activation.code", AuditEvent.Result.OK,
               next="choose a PIN")
        return CodeVerified(code_id=checked.pk)
    return _activation_finish(blink_user=blink_user, proved=checked.phone, ip=ip)


PIN_LENGTHS = range(4, 7)


class PinProofMissing(ActivationRefused):
    """The code that proved the phone is gone (used, or from another number): the user
    must confirm the number again before choosing a PIN."""

    def __init__(self) -> None:
        super().__init__("Confirm your number with a new code first.")


def pin_shaped(pin: str) -> bool:
    """Whether ``pin`` has a PIN's shape: 4 to 6 ASCII digits."""
    return len(pin) in PIN_LENGTHS and pin.isascii() and pin.isdigit()


def pin_problem(pin: str, *, phone: str = "") -> str:
    """Why ``pin`` cannot be a Blink PIN, as a sentence, or "" when it can."""
    if not pin_shaped(pin):
        return "Enter 4 to 6 digits."
    steps = {int(b) - int(a) for a, b in pairwise(pin)}
    if steps in ({0}, {1}, {-1}):
        return "Choose a PIN that is harder to guess than repeated or consecutive digits."
    digits = "".join(c for c in phone if c.isdigit())
    if digits.endswith(pin):
        return "Choose a PIN that is not the end of your phone number."
    return ""


def activation_pin_submit(*, blink_user: BlinkUser, code_id: int, pin: str,
                          ip: str | None) -> Activated:
    """Finish activation with the PIN the user chose, kept only as a password hash.

    ``code_id`` must be the user's own activation code, used for the number being
    verified within the code's lifetime: the PIN step cannot be reached any other way.
    """
    proof = VerificationCode.objects.filter(
        pk=code_id, blink_user=blink_user, purpose="activation", used_at__isnull=False,
        used_at__gt=timezone.now() - CODE_LIFETIME,
    ).first()
    if proof is None or not blink_user.pending_phone or proof.phone != blink_user.pending_phone:
        raise PinProofMissing
    problem = pin_problem(pin, phone=str(blink_user.pending_phone))
    if problem:
        raise ActivationRefused(problem)
    return _activation_finish(blink_user=blink_user, proved=proof.phone, ip=ip,
                              pin_hash=make_password(pin))


def _activation_finish(*, blink_user: BlinkUser, proved: PhoneNumber, ip: str | None,
                       pin_hash: str = "") -> Activated:
    """Make ``proved``, the number the user's code went to, theirs (or keep it, for one
    choosing a PIN), if it is still the number being verified."""
    company = blink_user.client.company
    reset_hint = "Text RESET and your PIN here." if pin_hash else "Text RESET here."
    try:
        with transaction.atomic():
            fresh = BlinkUser.objects.select_for_update().filter(pk=blink_user.pk).first()
            if fresh is None:  # removed by an admin a moment ago
                raise ActivationLinkDead
            # An Active user choosing a PIN; their link is cleared once they have.
            pin_only = fresh.is_active() and bool(fresh.activation_token_hash and pin_hash)
            if not (fresh.status in ACTIVATING or pin_only) or fresh.pending_phone != proved:
                raise ActivationRefused("This activation has already finished.")
            if pin_only and fresh.phone != fresh.pending_phone:
                # An admin changed the number since the code went out: the code proved
                # the old one.
                raise PinProofMissing
            if not pin_only:
                fresh.phone = fresh.pending_phone
                fresh.status = BlinkUser.Status.ACTIVE
                fresh.activated_at = timezone.now()
            fresh.pending_phone = None
            fresh.activation_token_hash = None
            fresh.activation_expires_at = None
            if pin_hash:
                fresh.pin_hash = pin_hash
            fresh.save()
            detail = {"phone": fresh.masked_phone(), **({"pin": "set"} if pin_hash else {})}
            audit_record(
                company=company, client=fresh.client,
                action="blink_user.pin_set" if pin_only else "blink_user.activate",
                actor=_user_actor(fresh, ip), detail=detail, target=fresh.username,
            )
            opening = (f"Your Blink PIN for {company.name} is set." if pin_only else
                       f"You're set up with Blink for {company.name}. Save this number.")
            sms_send(
                company=company, phone=fresh.phone, blink_user=fresh,
                kind="pin_set" if pin_only else "activated",
                text=f"{opening} Locked out or forgot your password? {reset_hint}",
            )
    except IntegrityError:
        # Someone else confirmed this number a moment ago.
        raise ActivationRefused(PHONE_REFUSED) from None
    return Activated(blink_user=fresh, sms_number=company_sms_number(company))
