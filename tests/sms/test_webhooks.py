"""Twilio's webhooks: only signed requests for Blink's public URL act; each text acts once;
malformed input is refused; a broker outage answers 503 with nothing half-done."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client as HttpClient
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter
from pytest_django.fixtures import Settings

from blink.models import AuditEvent
from clients.models import Company
from sms.models import Message, OptOut
from sms.services import OPTED_OUT_HOW, phone_opt_in, sms_send
from sms.webhooks import twilio_inbound
from tests.broker import unreachable_broker
from tests.fakes.twilio import FakeTwilio
from tests.sms.conftest import (
    BLINK_NUMBER,
    INBOUND_URL,
    STATUS_URL,
    USER_PHONE,
    fresh,
    post_form,
    text_blink,
)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def _refusals(company: Company) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(company=company, action="sms.webhook_refused"))


@pytest.fixture
def sent(twilio_webhooks: FakeTwilio, company: Company,
         send_now: Callable[..., Any]) -> Message:
    """A message Blink sent through the stand-in, waiting for its delivery report."""
    message = send_now(lambda: sms_send(company=company, phone=USER_PHONE, kind="test",
                                        text="Hello"))
    return fresh(message)


# -- Status callbacks ------------------------------------------------------------------------


def test_a_signed_delivery_report_marks_the_message_delivered(
    sent: Message, twilio_webhooks: FakeTwilio, client: HttpClient
) -> None:
    url, params, signature = twilio_webhooks.status_callback(sent.provider_id or "", "delivered")
    assert url == "https://blink.acme-it.example" + STATUS_URL

    response = post_form(client, STATUS_URL, params, signature)

    assert response.status_code == 204
    assert fresh(sent).status == Message.Status.DELIVERED


@pytest.mark.parametrize(("code", "words"), [
    (30003, "phone was off"), (30005, "does not exist"), (30006, "landline"),
    (30007, "filtered"), (39999, "error 39999"),
])
def test_an_undelivered_report_says_why_in_a_sentence(
    sent: Message, twilio_webhooks: FakeTwilio, client: HttpClient, code: int, words: str
) -> None:
    _, params, signature = twilio_webhooks.status_callback(
        sent.provider_id or "", "undelivered", error_code=code)

    assert post_form(client, STATUS_URL, params, signature).status_code == 204

    message = fresh(sent)
    assert message.status == Message.Status.UNDELIVERED
    assert message.error_code == str(code)
    assert words in message.error_message


def test_a_failed_report_for_an_unsubscribed_number_records_the_opt_out(
    sent: Message, twilio_webhooks: FakeTwilio, client: HttpClient
) -> None:
    _, params, signature = twilio_webhooks.status_callback(
        sent.provider_id or "", "failed", error_code=21610)

    post_form(client, STATUS_URL, params, signature)

    assert fresh(sent).status == Message.Status.FAILED
    assert OptOut.objects.filter(phone=USER_PHONE).exists()
    [event] = AuditEvent.objects.filter(action="sms.opt_out")
    assert (event.actor_label, event.detail["how"]) == ("Twilio", OPTED_OUT_HOW)


def test_the_same_opt_out_report_again_does_not_undo_a_later_start(
    sent: Message, twilio_webhooks: FakeTwilio, client: HttpClient, company: Company
) -> None:
    """A signed report carries no time: delivered again (late, or replayed by someone who
    captured it), it must not stop the texts a user asked back for with START."""
    _, params, signature = twilio_webhooks.status_callback(
        sent.provider_id or "", "failed", error_code=21610)
    post_form(client, STATUS_URL, params, signature)
    phone_opt_in(phone=USER_PHONE, company=company, blink_user=None)

    assert post_form(client, STATUS_URL, params, signature).status_code == 204

    assert not OptOut.objects.filter(phone=USER_PHONE).exists()
    assert AuditEvent.objects.filter(action="sms.opt_out").count() == 1


def test_reports_arriving_out_of_order_keep_the_final_status(
    sent: Message, twilio_webhooks: FakeTwilio, client: HttpClient
) -> None:
    for status in ("delivered", "sent", "undelivered"):
        _, params, signature = twilio_webhooks.status_callback(sent.provider_id or "", status)
        assert post_form(client, STATUS_URL, params, signature).status_code == 204

    assert fresh(sent).status == Message.Status.DELIVERED


@pytest.mark.parametrize("forgery", ["missing", "wrong", "host header URL", "other company"])
def test_an_unsigned_or_forged_report_is_refused_and_audited(
    sent: Message, twilio_webhooks: FakeTwilio, client: HttpClient, company: Company,
    forgery: str,
) -> None:
    _, params, _ = twilio_webhooks.status_callback(sent.provider_id or "", "failed",
                                                   error_code=30003)
    signature = {
        "missing": None,
        "wrong": "bm90IGEgc2lnbmF0dXJlIGF0IGFsbA==",
        # What a validator trusting the Host header would accept.
        "host header URL": twilio_webhooks.sign("http://testserver" + STATUS_URL, params),
        "other company": twilio_webhooks.sign("https://blink.rival.example" + STATUS_URL, params),
    }[forgery]

    response = post_form(client, STATUS_URL, params, signature)

    assert response.status_code == 403
    assert fresh(sent).status == Message.Status.SENT
    [event] = _refusals(company)
    assert event.result == AuditEvent.Result.REFUSED
    assert event.detail["message_sid"] == sent.provider_id
    assert twilio_webhooks.auth_token not in str(event.detail)


def test_a_report_for_an_unknown_message_changes_nothing(
    twilio_webhooks: FakeTwilio, client: HttpClient, settings: Settings, db: None
) -> None:
    params = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}
    signature = twilio_webhooks.sign(settings.BLINK_SITE_URL + STATUS_URL, params)

    assert post_form(client, STATUS_URL, params, signature).status_code == 204
    assert not Message.objects.exists()


def test_a_malformed_report_is_a_bad_request(
    sent: Message, twilio_webhooks: FakeTwilio, client: HttpClient
) -> None:
    _, params, _ = twilio_webhooks.status_callback(sent.provider_id or "", "delivered")
    params["MessageStatus"] = "exploded"
    signature = twilio_webhooks.sign("https://blink.acme-it.example" + STATUS_URL, params)

    assert post_form(client, STATUS_URL, params, signature).status_code == 400
    assert fresh(sent).status == Message.Status.SENT


# -- Incoming texts --------------------------------------------------------------------------


def test_a_signed_text_is_answered_with_empty_twiml_and_a_reply(
    twilio_webhooks: FakeTwilio, numbered: Company, client: HttpClient,
    send_now: Callable[..., Any],
) -> None:
    response = send_now(lambda: text_blink(client, twilio_webhooks, numbered, "HELP"))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content.decode() == EMPTY_TWIML
    inbound = Message.objects.get(direction=Message.Direction.INBOUND)
    assert (inbound.body, inbound.company, str(inbound.phone)) == ("HELP", numbered, USER_PHONE)
    [reply] = twilio_webhooks.messages_to(USER_PHONE)
    assert reply.from_ == BLINK_NUMBER
    assert "Text RESET for a new password" in reply.body


@pytest.mark.parametrize("forgery", [
    "missing", "wrong", "host header URL", "other company", "replayed with another body",
])
def test_an_unsigned_or_forged_text_is_refused_and_audited(
    twilio_webhooks: FakeTwilio, numbered: Company, client: HttpClient,
    send_now: Callable[..., Any], forgery: str,
) -> None:
    genuine = twilio_webhooks.inbound(to=BLINK_NUMBER, from_=USER_PHONE, body="HELP")
    params = dict(genuine)
    url = numbered.site_url + INBOUND_URL
    signature: str | None = {
        "missing": None,
        "wrong": "bm90IGEgc2lnbmF0dXJlIGF0IGFsbA==",
        "host header URL": twilio_webhooks.sign("http://testserver" + INBOUND_URL, params),
        "other company": twilio_webhooks.sign("https://blink.rival.example" + INBOUND_URL,
                                              params),
        "replayed with another body": twilio_webhooks.sign(url, params),
    }[forgery]
    if forgery == "replayed with another body":
        params["Body"] = "STOP"

    response = send_now(lambda: post_form(client, INBOUND_URL, params, signature))

    assert response.status_code == 403
    assert not Message.objects.exists()
    assert not OptOut.objects.exists()
    assert twilio_webhooks.accepted == []
    [event] = _refusals(numbered)
    assert event.result == AuditEvent.Result.REFUSED
    assert event.target_label == "inbound webhook"


def test_a_flood_of_forgeries_is_refused_and_audited_once_a_minute(
    twilio_webhooks: FakeTwilio, numbered: Company, client: HttpClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    params = twilio_webhooks.inbound(to=BLINK_NUMBER, from_=USER_PHONE, body="HELP")
    forged = "bm90IGEgc2lnbmF0dXJlIGF0IGFsbA=="

    statuses = [post_form(client, INBOUND_URL, params, forged).status_code for _ in range(20)]

    assert statuses == [403] * 20
    assert len(_refusals(numbered)) == 1
    assert caplog.text.count("refused a Twilio inbound webhook") == 20

    cache.delete(f"webhook-refused:{numbered.pk}:inbound")  # a minute later
    assert post_form(client, INBOUND_URL, params, forged).status_code == 403
    assert len(_refusals(numbered)) == 2


def test_without_an_auth_token_every_text_is_refused(
    twilio_webhooks: FakeTwilio, numbered: Company, client: HttpClient, settings: Settings
) -> None:
    settings.TWILIO_AUTH_TOKEN = ""
    params = twilio_webhooks.inbound(to=BLINK_NUMBER, from_=USER_PHONE, body="HELP")
    from twilio.request_validator import RequestValidator

    signature = RequestValidator("").compute_signature(numbered.site_url + INBOUND_URL, params)

    assert post_form(client, INBOUND_URL, params, signature).status_code == 403
    assert not Message.objects.exists()


def test_the_same_message_twice_acts_once(
    twilio_webhooks: FakeTwilio, numbered: Company, client: HttpClient,
    send_now: Callable[..., Any],
) -> None:
    sid = "SM" + "7" * 32
    first = send_now(lambda: text_blink(client, twilio_webhooks, numbered, "HELP", sid=sid))
    second = send_now(lambda: text_blink(client, twilio_webhooks, numbered, "HELP", sid=sid))

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.content.decode() == EMPTY_TWIML
    assert Message.objects.filter(direction=Message.Direction.INBOUND).count() == 1
    assert Message.objects.filter(direction=Message.Direction.OUTBOUND).count() == 1
    assert len(twilio_webhooks.accepted) == 1


def test_a_text_to_a_number_no_company_owns_is_logged_only(
    twilio_webhooks: FakeTwilio, numbered: Company, other_company: Company,
    client: HttpClient, caplog: pytest.LogCaptureFixture,
) -> None:
    response = text_blink(client, twilio_webhooks, None, "HELP", to="+14155550999")

    assert response.status_code == 200
    assert not Message.objects.exists()
    assert "no single company owns" in caplog.text

    forged = post_form(client, INBOUND_URL, twilio_webhooks.inbound(
        to="+14155550999", from_=USER_PHONE, body="HELP"), "bm9wZQ==")
    assert forged.status_code == 403
    assert not AuditEvent.objects.filter(action="sms.webhook_refused").exists()


@pytest.mark.parametrize("defect", [
    "two bodies", "NUL byte", "10 kB body", "no From", "From not a number", "two Froms",
    "bad MessageSid", "negative NumMedia", "Arabic-Indic digits", "16+ digit From",
])
def test_malformed_texts_are_refused_without_a_trace(
    twilio_webhooks: FakeTwilio, numbered: Company, client: HttpClient,
    send_now: Callable[..., Any], defect: str,
) -> None:
    params: dict[str, Any] = twilio_webhooks.inbound(to=BLINK_NUMBER, from_=USER_PHONE,
                                                     body="HELP")
    if defect == "two bodies":
        params["Body"] = ["HELP", "STOP"]
    elif defect == "NUL byte":
        params["Body"] = "HE\x00LP"
    elif defect == "10 kB body":
        params["Body"] = "A" * 10_240
    elif defect == "no From":
        del params["From"]
    elif defect == "From not a number":
        params["From"] = "+1 not a phone"
    elif defect == "two Froms":
        params["From"] = [USER_PHONE, "+14155550177"]
    elif defect == "bad MessageSid":
        params["MessageSid"] = "SM'); DROP TABLE"
    elif defect == "negative NumMedia":
        params["NumMedia"] = "-1"
    elif defect == "Arabic-Indic digits":
        params["From"] = "+١٤١٥٥٥٥٠١٢٣"
    elif defect == "16+ digit From":
        params["From"] = "+14155550123456789"
    from django.http import QueryDict

    signed = QueryDict(mutable=True)
    for name, value in params.items():
        signed.setlist(name, value if isinstance(value, list) else [value])
    signature = twilio_webhooks.sign(numbered.site_url + INBOUND_URL, signed)

    response = send_now(lambda: post_form(client, INBOUND_URL, params, signature))

    assert response.status_code == 400
    assert not Message.objects.exists()
    assert not OptOut.objects.exists()
    assert twilio_webhooks.accepted == []


def test_only_post_is_allowed(client: HttpClient) -> None:
    assert client.get(INBOUND_URL).status_code == 405
    assert client.get(STATUS_URL).status_code == 405


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_a_text_gets_503_and_waits_in_the_database(
    twilio_webhooks: FakeTwilio, numbered: Company, client: HttpClient
) -> None:
    sid = "SM" + "5" * 32
    with unreachable_broker():
        down = text_blink(client, twilio_webhooks, numbered, "START", sid=sid)
        twice = text_blink(client, twilio_webhooks, numbered, "START", sid=sid)

    assert (down.status_code, twice.status_code) == (503, 503)
    # Kept once, as it came, for beat's sweep; nothing acted on yet.
    [waiting] = Message.objects.all()
    assert (waiting.direction, waiting.status, waiting.provider_id, waiting.body) == (
        Message.Direction.INBOUND, Message.Status.QUEUED, sid, "START")
    assert str(waiting.phone) == USER_PHONE and waiting.blink_user is None
    assert twilio_webhooks.accepted == []

    # Delivered again once Blink is back (a fallback URL, or retries asked for in the
    # webhook URL): the waiting text is acted on, once.
    again = text_blink(client, twilio_webhooks, numbered, "START", sid=sid)
    assert again.status_code == 200
    assert Message.objects.filter(direction=Message.Direction.INBOUND).count() == 1
    assert Message.objects.get(direction=Message.Direction.INBOUND).status == "received"
    [reply] = twilio_webhooks.messages_to(USER_PHONE)
    assert "back on" in reply.body
    assert text_blink(client, twilio_webhooks, numbered, "START", sid=sid).status_code == 200
    assert len(twilio_webhooks.messages_to(USER_PHONE)) == 1


def test_error_reports_hide_the_text_of_an_inbound_sms(rf: Any, company: Company) -> None:
    """A text may carry a PIN ("RESET 1234"): Django's error reports must not show it."""
    request = rf.post("/sms/twilio/inbound", {"Body": "RESET 4829", "From": "+14155550123"})
    twilio_inbound(request)  # refused (unsigned); what matters is what a report would show

    cleaned = SafeExceptionReporterFilter().get_post_parameters(request)
    assert cleaned["Body"] != "RESET 4829" and cleaned["From"] == "+14155550123"


def test_an_error_report_from_inside_the_webhook_shows_no_pin(
    rf: Any, twilio_webhooks: FakeTwilio, numbered: Company, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The view's and inbound_queue's locals hold the text too; a report (the DEBUG page,
    an emailed report) must not show them."""
    pin = str(secrets.randbelow(9000) + 1000)
    params = twilio_webhooks.inbound(to=BLINK_NUMBER, from_=USER_PHONE, body=f"RESET {pin}")
    signature = twilio_webhooks.sign(numbered.site_url + INBOUND_URL, params)
    request = rf.post(INBOUND_URL, params, HTTP_X_TWILIO_SIGNATURE=signature)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug while queueing")

    monkeypatch.setattr("sms.tasks.inbound_receive.apply_async", broken)
    with pytest.raises(RuntimeError) as raised:
        twilio_inbound(request)

    # From the view down, as Django reports it (this test's own frame holds the PIN).
    report = ExceptionReporter(request, RuntimeError, raised.value, raised.tb.tb_next)
    page = report.get_traceback_html()
    assert "inbound_queue" in page and "a bug while queueing" in page
    assert f"RESET {pin}" not in page  # the PIN alone may match a line number or a port
