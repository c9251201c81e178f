"""SECURITY.md case 14 for SMS: a code reaches the phone and nowhere else — not the logs
(at DEBUG, the HTTP libraries included), not any stored message, not an error."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from blink.models import BlinkUser
from sms.codes import verification_code_issue
from sms.models import Message, OutboxSms
from tests.fakes.twilio import FakeTwilio
from tests.sms.conftest import USER_PHONE


def _stored_text() -> str:
    return "\n".join(
        f"{m.body}|{m.sealed_body}|{m.error_message}" for m in Message.objects.all()
    )


@pytest.mark.parametrize("failures", [0, 2])
def test_a_code_is_in_neither_logs_nor_stored_messages(
    twilio_backend: FakeTwilio, blink_user: BlinkUser, send_now: Callable[..., Any],
    caplog: pytest.LogCaptureFixture, failures: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    twilio_backend.fail_next(failures)

    send_now(lambda: verification_code_issue(blink_user=blink_user, phone=USER_PHONE,
                                             ip="203.0.113.9"))

    code = twilio_backend.code_for(USER_PHONE)
    assert Message.objects.get().status == Message.Status.SENT
    assert caplog.records, "nothing was logged: the test would prove nothing"
    assert code not in caplog.text
    assert twilio_backend.auth_token not in caplog.text
    assert USER_PHONE not in caplog.text
    assert code not in _stored_text()


def test_a_code_that_failed_to_send_is_erased(
    twilio_backend: FakeTwilio, blink_user: BlinkUser, send_now: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    twilio_backend.fail_next(6)

    send_now(lambda: verification_code_issue(blink_user=blink_user, phone=USER_PHONE, ip=None))

    [attempt, *_] = twilio_backend.attempts
    code = attempt.body.split("code is ")[1][:6]
    assert code.isdigit()
    message = Message.objects.get()
    assert (message.status, message.sealed_body) == (Message.Status.FAILED, "")
    assert code not in caplog.text
    assert code not in _stored_text()


def test_the_development_outbox_shows_the_code_but_the_message_does_not(
    blink_user: BlinkUser, send_now: Callable[..., Any], settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.SMS_BACKEND = "sms.backends.outbox.SmsBackend"
    caplog.set_level(logging.DEBUG)

    send_now(lambda: verification_code_issue(blink_user=blink_user, phone=USER_PHONE, ip=None))

    phone_view = OutboxSms.objects.get()
    code = phone_view.body.split("code is ")[1][:6]
    assert phone_view.provider_id == Message.objects.get().provider_id
    assert code not in _stored_text()
    assert code not in caplog.text


class QuotingBackend:
    """A backend whose unexpected error quotes the text it was given, as a careless
    library's error could."""

    def send(self, *, to: str, body: str, **_: object) -> str:
        raise RuntimeError(f"could not send {body!r} to {to}")


def test_an_unexpected_send_error_is_logged_without_the_code(
    settings, caplog, company, django_capture_on_commit_callbacks
):
    from sms.services import message_deliver, sms_send

    settings.SMS_BACKEND = f"{__name__}.QuotingBackend"
    caplog.set_level(logging.DEBUG)
    with django_capture_on_commit_callbacks(execute=False):
        message = sms_send(company=company, phone="+14155550123", kind="verification",
                           text="Your code is {secret}.", secret="482913")
    assert message_deliver(message_id=message.pk) == "failed"
    assert "could not be sent" in caplog.text and "RuntimeError" in caplog.text
    assert "482913" not in caplog.text
    message.refresh_from_db()
    assert message.sealed_body == "" and "482913" not in message.error_message
