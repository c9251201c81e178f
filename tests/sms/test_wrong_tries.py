"""Wrong codes and PINs count one by one (SECURITY.md: 5 tries a code, 10 wrong a day, then
self-service paused for a day), however many arrive at the same moment."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from blink.models import AuditEvent, BlinkUser
from clients.models import Client
from directory.models import Connection
from sms.codes import (
    TRIES_PER_CODE,
    SelfServicePaused,
    verification_code_check,
    verification_code_issue,
)
from sms.inbound import self_service_request
from sms.models import VerificationCode
from tests.conftest import demo_blink_user

PHONE = "+14155550188"


def _code(sms_outbox: list[dict[str, str]]) -> str:
    match = re.search(r"\b(\d{6})\b", sms_outbox[-1]["body"])
    assert match is not None
    return match.group(1)


@pytest.mark.django_db(transaction=True)
def test_guesses_sent_at_the_same_moment_get_no_more_tries_than_a_code_allows(
    acme_client: Client, demo_connection: Connection, sms_outbox: list[dict[str, str]]
) -> None:
    blink_user = demo_blink_user(acme_client, demo_connection, PHONE, status="invited")
    verification_code_issue(blink_user=blink_user, phone=PHONE, ip=None)
    right = _code(sms_outbox)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    guesses = 8
    barrier = threading.Barrier(guesses)

    def guess() -> None:
        barrier.wait()
        try:
            verification_code_check(blink_user=blink_user, code=wrong)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=guess) for _ in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    code = VerificationCode.objects.get(blink_user=blink_user)
    assert code.attempts == TRIES_PER_CODE
    # Used up: even the right code no longer works.
    assert verification_code_check(blink_user=blink_user, code=right) is None


def test_a_pause_set_since_the_user_was_read_stops_the_next_code(
    acme_client: Client, demo_connection: Connection, sms_outbox: list[dict[str, str]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    blink_user = demo_blink_user(acme_client, demo_connection, PHONE, status="invited")
    with django_capture_on_commit_callbacks(execute=True):
        verification_code_issue(blink_user=blink_user, phone=PHONE, ip=None)
    until = timezone.now() + timedelta(hours=24)
    BlinkUser.objects.filter(pk=blink_user.pk).update(paused_until=until)

    with pytest.raises(SelfServicePaused):
        verification_code_check(blink_user=blink_user, code=_code(sms_outbox))

    assert VerificationCode.objects.get(blink_user=blink_user).used_at is None


def test_a_pin_text_behind_the_one_that_paused_the_user_is_not_checked(
    pin_client: Client, demo_connection: Connection
) -> None:
    """The text was read before another one set the pause: its PIN is neither checked nor
    counted."""
    blink_user = BlinkUser.objects.select_related("client__company").get(
        pk=demo_blink_user(pin_client, demo_connection, PHONE).pk)
    blink_user.pin_hash = make_password("1234")
    blink_user.save(update_fields=["pin_hash"])
    BlinkUser.objects.filter(pk=blink_user.pk).update(
        paused_until=timezone.now() + timedelta(hours=24))

    with transaction.atomic():
        written = self_service_request(blink_user=blink_user, kind="reset", pin="1234",
                                       phone=PHONE, opted_out=False, text_id="SMx")

    [refusal] = written
    assert isinstance(refusal, AuditEvent)
    assert refusal.detail["reason"].startswith("self-service is paused")
    assert not VerificationCode.objects.filter(blink_user=blink_user).exists()
