"""Verification codes sent by SMS (SECURITY.md): 6 digits from ``secrets``, kept as a keyed
hash, single use, 10 minutes' life, 5 tries a code, and 10 wrong tries a day pause the
user's self-service for 24 hours. A resend kills the previous code."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from blink.models import BlinkUser
from sms.limits import sms_send_allow
from sms.models import VerificationCode
from sms.services import sms_send

CODE_LIFETIME = timedelta(minutes=10)
TRIES_PER_CODE = 5
WRONG_PER_DAY = 10
PAUSE = timedelta(hours=24)


class SelfServicePaused(Exception):
    """Too many wrong codes: the user's self-service is paused until ``until``."""

    def __init__(self, until: object) -> None:
        super().__init__("self-service paused")
        self.until = until


def _digest(blink_user_id: int, purpose: str, code: str) -> str:
    # Keyed with SECRET_KEY: a leaked table alone does not let anyone try the million codes.
    message = f"{blink_user_id}:{purpose}:{code}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def is_code_shaped(value: str) -> bool:
    """Exactly six ASCII digits (not Arabic-Indic or full-width ones)."""
    return len(value) == 6 and value.isascii() and value.isdigit()


@transaction.atomic
def verification_code_issue(
    *, blink_user: BlinkUser, phone: str, ip: str | None, purpose: str = "activation"
) -> VerificationCode:
    """Send a new code to ``phone``; earlier codes for the same purpose stop working.

    Raises ``SendLimited`` (before anything is sent) when a cap is reached.
    """
    sms_send_allow(user_id=blink_user.pk, phone=phone, ip=ip)
    now = timezone.now()
    VerificationCode.objects.filter(
        blink_user=blink_user, purpose=purpose, used_at=None, revoked_at=None
    ).update(revoked_at=now)
    code = f"{secrets.randbelow(1_000_000):06d}"
    issued = VerificationCode.objects.create(
        blink_user=blink_user, purpose=purpose, phone=phone,
        code_hash=_digest(blink_user.pk, purpose, code), expires_at=now + CODE_LIFETIME,
    )
    company = blink_user.client.company
    sms_send(
        company=company, phone=phone, blink_user=blink_user, kind="verification", secret=code,
        text=f"Your {company.name} Blink code is {{secret}}. It expires in 10 minutes. "
        "Never share it: nobody from IT will ask for it.",
    )
    return issued


def paused_until_locked(blink_user: BlinkUser) -> datetime | None:
    """Lock the user's row for this transaction and read their pause afresh: while it is
    held, no other code or PIN of theirs is checked or counted, so guesses sent at the same
    moment still count one by one against the limits. None when not paused."""
    until = (BlinkUser.objects.select_for_update().filter(pk=blink_user.pk)
             .values_list("paused_until", flat=True).first())
    return until if until is not None and until > timezone.now() else None


def wrong_try_counted(blink_user: BlinkUser) -> datetime | None:
    """After a wrong code or PIN was counted (on a code row's ``attempts``): pause the
    user's self-service when the last 24 hours hold ``WRONG_PER_DAY`` of them. Returns
    when the pause ends, or None. Inside a transaction that holds ``paused_until_locked``.
    """
    now = timezone.now()
    wrong = VerificationCode.objects.filter(
        blink_user=blink_user, created_at__gte=now - timedelta(hours=24),
    ).aggregate(wrong=Sum("attempts"))["wrong"] or 0
    if wrong < WRONG_PER_DAY:
        return None
    until = now + PAUSE
    BlinkUser.objects.filter(pk=blink_user.pk).update(paused_until=until)
    return until


def verification_code_check(
    *, blink_user: BlinkUser, code: str, purpose: str = "activation"
) -> VerificationCode | None:
    """The code, consumed, if ``code`` is the user's live code; otherwise None.

    A wrong code counts against the code and the user's day; the tenth wrong code
    in 24 hours pauses self-service (``SelfServicePaused``). Of two simultaneous
    submissions of one right code exactly one gets it.
    """
    # Committed before the pause is raised: the wrong try that caused it must count.
    with transaction.atomic():
        checked, paused_until = _code_try(blink_user=blink_user, code=code, purpose=purpose)
    if paused_until is not None:
        raise SelfServicePaused(paused_until)
    return checked


def _code_try(*, blink_user: BlinkUser, code: str,
              purpose: str) -> tuple[VerificationCode | None, datetime | None]:
    """One try at the user's live code: (the code if it matched and is now used, when
    self-service is paused until)."""
    paused_until = paused_until_locked(blink_user)
    if paused_until is not None:
        return None, paused_until
    now = timezone.now()
    live = (
        VerificationCode.objects.filter(
            blink_user=blink_user, purpose=purpose, used_at=None, revoked_at=None,
            expires_at__gt=now, attempts__lt=TRIES_PER_CODE,
        ).order_by("-created_at").first()
    )
    if live is None:
        return None, None
    if is_code_shaped(code) and hmac.compare_digest(
        live.code_hash, _digest(blink_user.pk, purpose, code)
    ):
        claimed = VerificationCode.objects.filter(pk=live.pk, used_at=None,
                                                  revoked_at=None).update(used_at=now)
        return (live if claimed == 1 else None), None
    VerificationCode.objects.filter(pk=live.pk).update(attempts=F("attempts") + 1)
    return None, wrong_try_counted(blink_user)
