"""Activation steps racing with each other and with the console: another request commits
between the moment a page reads the activating user and the moment it acts. Interleaved by
hand: the page reads the user, the other call runs and commits, the page goes on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core import mail
from django.test import Client as Browser
from phonenumber_field.phonenumber import PhoneNumber

from blink import activation
from blink.audit import SYSTEM
from blink.invitations import blink_user_reinvite, blink_user_remove
from blink.models import BlinkUser
from sms.backends import locmem
from sms.codes import verification_code_issue
from tests.blink.test_activation import (
    OTHER_PHONE,
    PHONE,
    latest_code,
    link_in,
    path_of,
    start,
    submit_phone,
)

Run = Callable[..., Any]


@pytest.fixture
def meanwhile(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], object]], None]:
    """``meanwhile(action)``: the next activation page reads the user from the session, then
    ``action`` runs, then the page goes on with the user as it read them."""

    def arrange(action: Callable[[], object]) -> None:
        read = activation.activation_user_for_session

        def read_then_act(**kwargs: Any) -> BlinkUser | None:
            monkeypatch.setattr(activation, "activation_user_for_session", read)
            blink_user = read(**kwargs)
            action()
            return blink_user

        monkeypatch.setattr(activation, "activation_user_for_session", read_then_act)

    return arrange


def afresh(blink_user: BlinkUser) -> BlinkUser:
    return BlinkUser.objects.get(pk=blink_user.pk)


def to(outbox: list[locmem.SentSms], phone: str) -> list[str]:
    return [m["body"] for m in outbox if m["to"] == phone]


def test_a_resend_racing_a_new_number_texts_the_new_number(
    invited: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Run, meanwhile: Callable[..., None],
) -> None:
    browser = Browser()
    start(browser, invited)
    submit_phone(browser, django_capture_on_commit_callbacks)
    # The user types another number in a second tab while the resend is on its way.
    meanwhile(lambda: activation.activation_phone_submit(
        blink_user=afresh(invited), number=PhoneNumber.from_string(OTHER_PHONE), ip=None))

    with django_capture_on_commit_callbacks(execute=True):
        resent = browser.post("/activate/code/", {"resend": "1"})

    assert b"A new code is on its way" in resent.content
    assert len(to(sms_outbox, PHONE)) == 1  # the first number got no second code
    assert len(to(sms_outbox, OTHER_PHONE)) == 2
    refused = browser.post("/activate/code/", {"code": latest_code(sms_outbox, PHONE)})
    assert refused.status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        done = browser.post("/activate/code/", {"code": latest_code(sms_outbox, OTHER_PHONE)})
    assert done["Location"] == "/activate/done/"
    invited.refresh_from_db()
    assert invited.status == BlinkUser.Status.ACTIVE and str(invited.phone) == OTHER_PHONE


def test_a_code_texted_to_another_number_does_not_confirm_the_one_being_verified(
    invited: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Run,
) -> None:
    browser = Browser()
    start(browser, invited)
    submit_phone(browser, django_capture_on_commit_callbacks, phone=OTHER_PHONE)
    # The latest code went to a number the user had replaced, as a resend that read the
    # old number before the new one was saved did.
    with django_capture_on_commit_callbacks(execute=True):
        verification_code_issue(blink_user=afresh(invited), phone=PHONE, ip=None)

    refused = browser.post("/activate/code/", {"code": latest_code(sms_outbox, PHONE)})

    assert refused.status_code == 400
    assert "That code is wrong or has expired" in refused.content.decode()
    invited.refresh_from_db()
    assert invited.status == BlinkUser.Status.VERIFYING_PHONE and invited.phone is None
    # A new code goes to the number being verified, and that one works.
    with django_capture_on_commit_callbacks(execute=True):
        browser.post("/activate/code/", {"resend": "1"})
    with django_capture_on_commit_callbacks(execute=True):
        done = browser.post("/activate/code/", {"code": latest_code(sms_outbox, OTHER_PHONE)})
    assert done["Location"] == "/activate/done/"
    invited.refresh_from_db()
    assert invited.status == BlinkUser.Status.ACTIVE and str(invited.phone) == OTHER_PHONE


def test_a_number_typed_after_activation_finished_in_another_tab_changes_nothing(
    invited: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Run, meanwhile: Callable[..., None],
) -> None:
    browser = Browser()
    start(browser, invited)
    submit_phone(browser, django_capture_on_commit_callbacks)
    code = latest_code(sms_outbox)
    meanwhile(lambda: activation.activation_code_submit(blink_user=afresh(invited), code=code,
                                                        ip=None))

    with django_capture_on_commit_callbacks(execute=True):
        answer = browser.post("/activate/phone/", {"phone": OTHER_PHONE})

    assert answer.status_code == 404 and b"doesn't work any more" in answer.content
    invited.refresh_from_db()
    assert invited.status == BlinkUser.Status.ACTIVE and str(invited.phone) == PHONE
    assert invited.pending_phone is None
    assert to(sms_outbox, OTHER_PHONE) == []


def test_a_number_typed_as_the_admin_resets_the_user_changes_nothing(
    invited: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Run, meanwhile: Callable[..., None],
) -> None:
    browser = Browser()
    start(browser, invited)
    meanwhile(lambda: blink_user_reinvite(blink_user=afresh(invited), actor=SYSTEM))

    with django_capture_on_commit_callbacks(execute=True):
        answer = browser.post("/activate/phone/", {"phone": PHONE})

    assert answer.status_code == 404 and b"doesn't work any more" in answer.content
    invited.refresh_from_db()
    assert invited.status == BlinkUser.Status.INVITED and invited.pending_phone is None
    assert sms_outbox == []
    # The new link is the one that works.
    assert Browser().get(path_of(link_in(mail.outbox[-1]))).status_code == 302


def test_a_user_removed_while_typing_their_number_gets_the_dead_link_page(
    invited: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Run, meanwhile: Callable[..., None],
) -> None:
    browser = Browser()
    start(browser, invited)
    meanwhile(lambda: blink_user_remove(blink_user=afresh(invited), actor=SYSTEM))

    with django_capture_on_commit_callbacks(execute=True):
        answer = browser.post("/activate/phone/", {"phone": PHONE})

    assert answer.status_code == 404 and b"doesn't work any more" in answer.content
    assert not BlinkUser.objects.filter(pk=invited.pk).exists()
    assert sms_outbox == []


def test_a_removed_user_asking_for_a_new_code_gets_the_dead_link_page(
    invited: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Run, meanwhile: Callable[..., None],
) -> None:
    browser = Browser()
    start(browser, invited)
    submit_phone(browser, django_capture_on_commit_callbacks)
    meanwhile(lambda: blink_user_remove(blink_user=afresh(invited), actor=SYSTEM))

    with django_capture_on_commit_callbacks(execute=True):
        answer = browser.post("/activate/code/", {"resend": "1"})

    assert answer.status_code == 404 and b"doesn't work any more" in answer.content
    assert len(sms_outbox) == 1


def test_a_user_removed_as_their_code_is_checked_gets_the_dead_link_page(
    invited: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Run, monkeypatch: pytest.MonkeyPatch,
) -> None:
    browser = Browser()
    start(browser, invited)
    submit_phone(browser, django_capture_on_commit_callbacks)
    check = activation.verification_code_check

    def check_then_remove(**kwargs: Any) -> object:
        checked = check(**kwargs)
        blink_user_remove(blink_user=afresh(invited), actor=SYSTEM)
        return checked

    monkeypatch.setattr(activation, "verification_code_check", check_then_remove)

    with django_capture_on_commit_callbacks(execute=True):
        answer = browser.post("/activate/code/", {"code": latest_code(sms_outbox)})

    assert answer.status_code == 404 and b"doesn't work any more" in answer.content
    assert not BlinkUser.objects.filter(pk=invited.pk).exists()
    assert len(sms_outbox) == 1  # no "You're set up" text
