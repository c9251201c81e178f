"""The Twilio backend through the real twilio library against the stand-in: what reaches the
phone, what is refused for good, and what is tried again (with the same text)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from blink.models import BlinkUser
from clients.models import Company
from sms.backends import SmsError, sms_backend
from sms.backends.twilio import SmsBackend as TwilioBackend
from sms.codes import verification_code_check, verification_code_issue
from sms.models import Message, OptOut
from sms.services import REDACTED, sms_send
from tests.fakes.twilio import FakeTwilio
from tests.fixtures.proxy import Proxy
from tests.sms.conftest import USER_PHONE, fresh

INVALID = "+15005550001"  # Twilio's magic number for 21211
UNSUBSCRIBED = "+15005550004"  # … for 21610
LANDLINE = "+15005550009"  # … for 21614


def _send(company: Company, send_now: Callable[..., Any], phone: str = USER_PHONE,
          text: str = "Hello from Blink") -> Message:
    message: Message = send_now(
        lambda: sms_send(company=company, phone=phone, text=text, kind="test")
    )
    return fresh(message)


def test_a_message_reaches_the_phone_and_is_marked_sent(
    twilio_backend: FakeTwilio, company: Company, send_now: Callable[..., Any]
) -> None:
    message = _send(company, send_now)

    assert isinstance(sms_backend(), TwilioBackend)
    [accepted] = twilio_backend.accepted
    assert (accepted.to, accepted.body) == (USER_PHONE, "Hello from Blink")
    assert accepted.from_ == message.blink_number == "+15005550006"
    assert accepted.status_callback == "https://blink.acme-it.example/sms/twilio/status"
    assert message.status == Message.Status.SENT
    assert message.provider_id == accepted.sid
    assert message.attempts == 1
    assert (message.error_code, message.error_message) == ("", "")


def test_texts_are_not_left_in_twilios_queue_for_hours(
    twilio_backend: FakeTwilio, company: Company, blink_user: BlinkUser,
    send_now: Callable[..., Any]
) -> None:
    """Twilio keeps a text queued for up to ten hours by default; a code lives ten
    minutes, and nothing else Blink sends is worth receiving an hour late."""
    _send(company, send_now)
    send_now(lambda: verification_code_issue(blink_user=blink_user, phone=USER_PHONE,
                                             ip=None))

    assert [m.validity_period for m in twilio_backend.accepted] == [3600, 600]


def test_a_company_with_a_messaging_service_sends_through_it(
    twilio_backend: FakeTwilio, company: Company, send_now: Callable[..., Any]
) -> None:
    company.messaging_service_sid = "MG" + "ab" * 16
    company.save()

    message = _send(company, send_now)

    [accepted] = twilio_backend.accepted
    assert accepted.messaging_service_sid == company.messaging_service_sid
    assert accepted.from_ == ""
    assert message.status == Message.Status.SENT


def test_an_invalid_number_fails_for_good_without_a_retry(
    twilio_backend: FakeTwilio, company: Company, send_now: Callable[..., Any]
) -> None:
    message = _send(company, send_now, phone=INVALID)

    assert len(twilio_backend.attempts) == 1
    assert twilio_backend.accepted == []
    assert message.status == Message.Status.FAILED
    assert message.error_code == "21211"
    assert message.error_message.startswith("The number is not a valid mobile number.")
    assert message.attempts == 1


def test_an_unsubscribed_number_is_recorded_and_not_called_again(
    twilio_backend: FakeTwilio, company: Company, send_now: Callable[..., Any]
) -> None:
    message = _send(company, send_now, phone=UNSUBSCRIBED)

    assert message.status == Message.Status.FAILED
    assert message.error_code == "21610"
    assert "texted STOP" in message.error_message
    assert OptOut.objects.filter(phone=UNSUBSCRIBED).exists()

    later = _send(company, send_now, phone=UNSUBSCRIBED, text="Another one")
    assert later.status == Message.Status.FAILED
    assert later.error_code == "opted_out"
    assert len(twilio_backend.attempts) == 1


def test_a_landline_fails_with_a_sentence(
    twilio_backend: FakeTwilio, company: Company, send_now: Callable[..., Any]
) -> None:
    message = _send(company, send_now, phone=LANDLINE)

    assert (message.status, message.error_code) == (Message.Status.FAILED, "21614")
    assert message.error_message.startswith("The number is not a mobile number")


def test_a_server_error_is_retried_with_the_same_code(
    twilio_backend: FakeTwilio, blink_user: BlinkUser, send_now: Callable[..., Any]
) -> None:
    twilio_backend.fail_next(1, status=500)

    issued = send_now(lambda: verification_code_issue(blink_user=blink_user, phone=USER_PHONE,
                                                      ip="203.0.113.9"))

    first, second = twilio_backend.attempts
    assert (first.status, second.status) == (500, 201)
    assert first.body == second.body
    [accepted] = twilio_backend.accepted
    assert accepted.body == first.body
    message = Message.objects.get(kind="verification")
    assert message.status == Message.Status.SENT
    assert message.attempts == 2
    assert message.provider_id == accepted.sid
    assert message.sealed_body == ""
    assert REDACTED in message.body
    code = twilio_backend.code_for(USER_PHONE)
    assert verification_code_check(blink_user=blink_user, code=code) == issued


def test_a_timeout_then_success_sends_one_message(
    twilio_backend: FakeTwilio, blink_user: BlinkUser, send_now: Callable[..., Any],
    settings: Settings,
) -> None:
    settings.TWILIO_TIMEOUT = 1
    twilio_backend.stall_next(1, seconds=2)

    send_now(lambda: verification_code_issue(blink_user=blink_user, phone=USER_PHONE, ip=None))

    timed_out, answered = twilio_backend.attempts
    assert (timed_out.status, answered.status) == (0, 201)
    assert timed_out.body == answered.body
    assert [m.body for m in twilio_backend.accepted] == [answered.body]
    message = Message.objects.get(kind="verification")
    assert (message.status, message.attempts) == (Message.Status.SENT, 2)


def test_when_retries_run_out_the_message_fails_and_its_text_is_erased(
    twilio_backend: FakeTwilio, blink_user: BlinkUser, send_now: Callable[..., Any]
) -> None:
    twilio_backend.fail_next(6, status=503)

    send_now(lambda: verification_code_issue(blink_user=blink_user, phone=USER_PHONE, ip=None))

    assert len(twilio_backend.attempts) == 6
    assert len({a.body for a in twilio_backend.attempts}) == 1
    assert twilio_backend.accepted == []
    message = Message.objects.get(kind="verification")
    assert message.status == Message.Status.FAILED
    assert message.attempts == 6
    assert message.sealed_body == ""
    assert message.error_code == "20503"
    assert "gave up" in message.error_message


def test_wrong_credentials_fail_with_a_sentence_and_no_secret(
    twilio_backend: FakeTwilio, company: Company, send_now: Callable[..., Any],
    settings: Settings,
) -> None:
    settings.TWILIO_AUTH_TOKEN = "not-the-token-0123456789"

    message = _send(company, send_now)

    assert (message.status, message.error_code) == (Message.Status.FAILED, "20003")
    assert "TWILIO_AUTH_TOKEN" in message.error_message
    assert "not-the-token" not in message.error_message
    assert twilio_backend.accepted == []


@pytest.mark.parametrize(("status", "permanent", "code"), [
    (429, False, "20429"), (500, False, "20500"), (503, False, "20503"),
])
def test_busy_and_broken_answers_are_temporary(
    twilio_backend: FakeTwilio, status: int, permanent: bool, code: str
) -> None:
    twilio_backend.fail_next(1, status=status)

    with pytest.raises(SmsError) as raised:
        sms_backend().send(to=USER_PHONE, body="hi", sender="+15005550006")

    assert (raised.value.permanent, raised.value.code) == (permanent, code)


def test_refusals_quote_no_full_number(twilio_backend: FakeTwilio) -> None:
    twilio_backend.refuse(USER_PHONE, 21612)

    with pytest.raises(SmsError) as raised:
        sms_backend().send(to=USER_PHONE, body="hi", sender="+15005550006")

    assert raised.value.permanent
    assert raised.value.code == "21612"
    assert USER_PHONE not in raised.value.message


def test_an_unreachable_twilio_is_a_temporary_connection_error(
    twilio_backend: FakeTwilio, settings: Settings
) -> None:
    settings.TWILIO_API_BASE = "https://127.0.0.1:9"

    with pytest.raises(SmsError) as raised:
        sms_backend().send(to=USER_PHONE, body="hi", sender="+15005550006")

    assert (raised.value.permanent, raised.value.code) == (False, "connection")


def test_the_stand_ins_certificate_is_checked(
    twilio_backend: FakeTwilio, settings: Settings
) -> None:
    # Without the stand-in's CA the certificate is refused (REQUESTS_CA_BUNDLE is ignored).
    settings.TWILIO_CA_BUNDLE = ""

    with pytest.raises(SmsError) as raised:
        sms_backend().send(to=USER_PHONE, body="hi", sender="+15005550006")

    assert raised.value.code == "connection"
    assert twilio_backend.attempts == []


def test_messages_go_through_the_configured_proxy(
    twilio_backend: FakeTwilio, https_proxy: Proxy, settings: Settings, company: Company,
    send_now: Callable[..., Any],
) -> None:
    settings.BLINK_HTTPS_PROXY = https_proxy.url

    message = _send(company, send_now)

    assert message.status == Message.Status.SENT
    assert [a.to for a in twilio_backend.accepted] == [USER_PHONE]
    assert https_proxy.tunnels == [f"127.0.0.1:{twilio_backend.port}"]
