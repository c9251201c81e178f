"""The PIN step of activation, for clients whose SMS reset needs a PIN: after the code the
user chooses a PIN, kept only as a hash, and only then becomes active."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.hashers import check_password
from django.contrib.sessions.backends.cache import SessionStore
from django.test import Client as Browser
from django.utils import timezone
from django.views.debug import SafeExceptionReporterFilter

from blink.activation import pin_problem
from blink.activation_views import activation_code, activation_pin
from blink.audit import SYSTEM
from blink.invitations import blink_user_pin_ask
from blink.models import AuditEvent, BlinkUser
from clients.models import Client
from sms.backends import locmem
from sms.models import VerificationCode
from tests.blink.conftest import invite
from tests.blink.test_activation import PHONE, latest_code, start
from tests.conftest import demo_blink_user

PIN = "4821"




@pytest.fixture
def invited(pin_client: Client, directory: Any,
            django_capture_on_commit_callbacks: Callable[..., Any]) -> BlinkUser:
    return invite(pin_client, directory, django_capture_on_commit_callbacks)


def through_code(browser: Browser, blink_user: BlinkUser, outbox: list[locmem.SentSms],
                 run: Callable[..., Any]) -> Any:
    start(browser, blink_user)
    with run(execute=True):
        page = browser.post("/activate/phone/", {"phone": PHONE})
    assert page.status_code == 302, page.content
    with run(execute=True):
        return browser.post("/activate/code/", {"code": latest_code(outbox)})


def test_after_the_code_the_user_chooses_a_pin_and_then_is_active(
    invited: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    browser = Browser()
    answer = through_code(browser, invited, sms_outbox, django_capture_on_commit_callbacks)
    assert answer.status_code == 302 and answer["Location"] == "/activate/pin/"
    invited.refresh_from_db()
    assert invited.status == BlinkUser.Status.VERIFYING_PHONE and invited.phone is None

    page = browser.get("/activate/pin/")
    assert page.status_code == 200
    assert b"Step 3 of 3" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        done = browser.post("/activate/pin/", {"pin": PIN, "pin_again": PIN})

    assert done.status_code == 302 and done["Location"] == "/activate/done/"
    invited.refresh_from_db()
    assert invited.status == BlinkUser.Status.ACTIVE and str(invited.phone) == PHONE
    assert PIN not in invited.pin_hash and check_password(PIN, invited.pin_hash)
    assert "Text RESET and your PIN here." in sms_outbox[-1]["body"]
    assert b"RESET</strong> and your PIN" in browser.get("/activate/done/").content
    [activated] = AuditEvent.objects.filter(action="blink_user.activate")
    assert activated.detail["pin"] == "set"
    assert PIN not in str(list(AuditEvent.objects.values_list("detail", flat=True)))


@pytest.mark.parametrize(("pin", "again", "words"), [
    ("12", "12", b"4 to 6 digits"), ("1234567", "1234567", b"4 to 6 digits"),
    ("abcd", "abcd", b"4 to 6 digits"), ("\u0664\u0668\u0662\u0661", "\u0664\u0668\u0662\u0661",
                                         b"4 to 6 digits"),
    ("1111", "1111", b"harder to guess"), ("1234", "1234", b"harder to guess"),
    ("9876", "9876", b"harder to guess"), ("50123", "50123", b"end of your phone"),
    (PIN, "4822", b"not the same"),
])
def test_weak_or_mistyped_pins_are_refused_and_the_user_stays_on_the_step(
    invited: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any], pin: str, again: str, words: bytes,
) -> None:
    browser = Browser()
    through_code(browser, invited, sms_outbox, django_capture_on_commit_callbacks)

    page = browser.post("/activate/pin/", {"pin": pin, "pin_again": again})

    assert page.status_code == 400
    errors = page.content.split(b'class="errors"', 1)[1].split(b"</div>", 1)[0]
    assert words in errors
    invited.refresh_from_db()
    assert invited.status == BlinkUser.Status.VERIFYING_PHONE and invited.pin_hash == ""


def test_the_pin_step_cannot_be_reached_without_the_code(
    invited: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    browser = Browser()
    start(browser, invited)
    with django_capture_on_commit_callbacks(execute=True):
        browser.post("/activate/phone/", {"phone": PHONE})

    skipped = browser.post("/activate/pin/", {"pin": PIN, "pin_again": PIN})

    assert skipped.status_code == 302 and skipped["Location"] == "/activate/code/"
    invited.refresh_from_db()
    assert invited.status == BlinkUser.Status.VERIFYING_PHONE
    assert Browser().post("/activate/pin/", {"pin": PIN, "pin_again": PIN}).status_code == 404


def test_a_stale_or_changed_number_sends_the_user_back_for_a_new_code(
    invited: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    browser = Browser()
    through_code(browser, invited, sms_outbox, django_capture_on_commit_callbacks)
    VerificationCode.objects.filter(blink_user=invited).update(
        used_at=timezone.now() - timedelta(minutes=11))

    late = browser.post("/activate/pin/", {"pin": PIN, "pin_again": PIN})

    assert late.status_code == 302 and late["Location"] == "/activate/code/"
    assert browser.get("/activate/pin/")["Location"] == "/activate/code/"
    invited.refresh_from_db()
    assert invited.status == BlinkUser.Status.VERIFYING_PHONE


def test_a_paused_active_user_choosing_a_pin_is_texted_no_code(
    pin_client: Client, directory: Any,
    sms_outbox: list[locmem.SentSms], django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    user = demo_blink_user(pin_client, directory, PHONE)
    BlinkUser.objects.filter(pk=user.pk).update(email="ava@globex.example")
    user.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        blink_user_pin_ask(blink_user=user, actor=SYSTEM)
    browser = Browser()
    start(browser, user)
    with django_capture_on_commit_callbacks(execute=True):
        browser.post("/activate/phone/")
    BlinkUser.objects.filter(pk=user.pk).update(paused_until=timezone.now() + timedelta(hours=1))

    with django_capture_on_commit_callbacks(execute=True):
        resent = browser.post("/activate/code/", {"resend": "1"})
    again = Browser()
    start(again, user)
    with django_capture_on_commit_callbacks(execute=True):
        asked = again.post("/activate/phone/")

    for answer in (resent, asked):
        assert answer.status_code == 429 and b"paused activation" in answer.content
    assert len(sms_outbox) == 1
    user.refresh_from_db()
    assert user.status == BlinkUser.Status.ACTIVE and user.pin_hash == ""


def test_clients_without_the_option_skip_the_pin_step(
    acme_client: Client, directory: Any,
    sms_outbox: list[locmem.SentSms], django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    user = invite(acme_client, directory, django_capture_on_commit_callbacks)
    browser = Browser()

    answer = through_code(browser, user, sms_outbox, django_capture_on_commit_callbacks)

    assert answer["Location"] == "/activate/done/"
    user.refresh_from_db()
    assert user.status == BlinkUser.Status.ACTIVE and user.pin_hash == ""
    assert browser.get("/activate/pin/").status_code == 404


def test_pin_rules() -> None:
    assert pin_problem("4821") == ""
    assert pin_problem("480216") == ""
    assert pin_problem("0123", phone="+14155550123")
    assert pin_problem("12 34")


def test_error_reports_hide_the_code_and_the_pin_as_posted(rf: Any) -> None:
    """Django's error reports (the DEBUG page, a mailed report) list a request's POST."""
    coded = rf.post("/activate/code/", {"code": "482913"})
    pinned = rf.post("/activate/pin/", {"pin": PIN, "pin_again": PIN})
    for request, view in ((coded, activation_code), (pinned, activation_pin)):
        request.session = SessionStore()
        assert view(request).status_code == 404  # no activation under way: the page says so

    reported = SafeExceptionReporterFilter()
    assert reported.get_post_parameters(coded)["code"] != "482913"
    cleaned = reported.get_post_parameters(pinned)
    assert PIN not in (cleaned["pin"], cleaned["pin_again"])
