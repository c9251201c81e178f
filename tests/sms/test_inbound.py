"""The keyword router behind the inbound webhook: defined replies for every text, opt-outs
that stick, and the same answer whether or not the number belongs to a Blink user."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client as HttpClient
from pytest_django.fixtures import Settings

from blink.models import AuditEvent, BlinkUser
from clients.models import Company
from sms.inbound import (
    REPLIES_PER_HOUR,
    help_text,
    inbound_company,
    inbound_company_forget,
    keyword_parse,
    neutral_reply,
)
from sms.models import Message, OptOut
from sms.services import REDACTED, sms_send
from tests.fakes.twilio import FakeTwilio
from tests.sms.conftest import BLINK_NUMBER, STRANGER_PHONE, USER_PHONE, text_blink

Texter = Callable[..., Any]


@pytest.fixture
def text(twilio_webhooks: FakeTwilio, numbered: Company, client: HttpClient,
         send_now: Callable[..., Any]) -> Texter:
    """Text the company's Blink number through the signed webhook; replies are sent."""

    def send(body: str, *, from_: str = USER_PHONE, num_media: int = 0) -> Any:
        return send_now(lambda: text_blink(client, twilio_webhooks, numbered, body,
                                           from_=from_, num_media=num_media))

    return send


@pytest.mark.parametrize(("body", "keyword"), [
    (" reset ", "reset"), ("RESET!", "reset"), ("Réset", "reset"), ("reset.", "reset"),
    ("ＳＴＯＰ", "stop"), ("Unlock\n", "unlock"), ("", ""), ("   ", ""), ("!!!", ""),
    ("reset please", ""), ("Stop-All", "stopall"),
])
def test_keywords_are_normalised(body: str, keyword: str) -> None:
    assert keyword_parse(body)[0] == keyword


@pytest.mark.parametrize(("body", "num_media"), [
    ("", 1), ("what is this", 0), ("HELP", 0), ("info", 0), ("\U0001f600", 0),
    ("reset please", 0),
])
def test_every_text_gets_a_defined_reply(
    text: Texter, twilio_webhooks: FakeTwilio, numbered: Company, body: str, num_media: int
) -> None:
    response = text(body, num_media=num_media)

    assert response.status_code == 200
    [reply] = twilio_webhooks.messages_to(USER_PHONE)
    assert reply.body == help_text(numbered)
    assert reply.body.startswith("Acme IT Blink: Text RESET for a new password or UNLOCK")


@pytest.mark.parametrize("body", [" reset ", "RESET!", "Réset", "UNLOCK", "unlock 1234"])
def test_reset_and_unlock_get_the_neutral_reply(
    text: Texter, twilio_webhooks: FakeTwilio, numbered: Company, body: str
) -> None:
    response = text(body)

    assert response.status_code == 200
    [reply] = twilio_webhooks.messages_to(USER_PHONE)
    assert reply.body == neutral_reply(numbered)


def test_the_help_text_names_the_company_and_its_support_email(numbered: Company) -> None:
    numbered.support_email = "help@acme-it.example"
    assert help_text(numbered) == (
        "Acme IT Blink: Text RESET for a new password or UNLOCK to unlock your account. "
        "Help: help@acme-it.example. Text STOP to opt out."
    )


def test_the_reply_to_a_stranger_is_the_reply_to_a_blink_user(
    text: Texter, twilio_webhooks: FakeTwilio, blink_user: BlinkUser
) -> None:
    known = text("RESET")
    unknown = text("RESET", from_=STRANGER_PHONE)

    assert (known.status_code, known.content) == (unknown.status_code, unknown.content)
    # The user's reset outcome follows separately (tests/sms/test_keywords_reset.py).
    to_user = twilio_webhooks.messages_to(USER_PHONE)[0]
    [to_stranger] = twilio_webhooks.messages_to(STRANGER_PHONE)
    assert to_user.body == to_stranger.body
    assert to_user.from_ == to_stranger.from_


def test_stop_records_an_opt_out_and_nothing_is_sent_after_it(
    text: Texter, twilio_webhooks: FakeTwilio, numbered: Company, send_now: Callable[..., Any]
) -> None:
    response = text("Stop")

    assert response.status_code == 200
    assert OptOut.objects.filter(phone=USER_PHONE).exists()
    assert twilio_webhooks.accepted == []  # Twilio confirms STOP itself

    text("HELP")
    later = send_now(lambda: sms_send(company=numbered, phone=USER_PHONE, kind="test",
                                      text="Anything"))
    assert twilio_webhooks.accepted == []
    assert Message.objects.get(pk=later.pk).error_code == "opted_out"


def opt_events() -> list[tuple[str, str, str, str, str]]:
    return [(e.action, e.actor_label, e.target_label, e.detail["how"],
             e.client.name if e.client else "")
            for e in AuditEvent.objects.filter(action__startswith="sms.opt").order_by("id")]


def test_stop_and_start_each_leave_one_audit_event(
    text: Texter, blink_user: BlinkUser
) -> None:
    for body in ("STOP", "stop", "START", "START"):  # repeats change nothing
        text(body)
    text("STOP", from_=STRANGER_PHONE)

    assert opt_events() == [
        ("sms.opt_out", "alex (SMS from •••• 0123)", "alex", "texted STOP", "Globex"),
        ("sms.opt_in", "alex (SMS from •••• 0123)", "alex", "texted START", "Globex"),
        ("sms.opt_out", "SMS from •••• 0177", "•••• 0177", "texted STOP", ""),
    ]


@pytest.mark.parametrize("word", ["STOPALL", "unsubscribe", "Cancel", "END", "quit"])
def test_every_opt_out_word_opts_out(text: Texter, word: str) -> None:
    text(word)
    assert OptOut.objects.filter(phone=USER_PHONE).exists()


@pytest.mark.parametrize("word", ["START", "unstop", "Yes"])
def test_start_restores_messages(
    text: Texter, twilio_webhooks: FakeTwilio, numbered: Company, send_now: Callable[..., Any],
    word: str,
) -> None:
    text("STOP")
    text(word)

    assert not OptOut.objects.exists()
    [back_on] = twilio_webhooks.messages_to(USER_PHONE)
    assert back_on.body.startswith("Acme IT Blink messages are back on.")
    send_now(lambda: sms_send(company=numbered, phone=USER_PHONE, kind="test", text="Hi"))
    assert [m.body for m in twilio_webhooks.messages_to(USER_PHONE)][-1] == "Hi"


def test_an_auto_responder_stops_getting_answers(
    text: Texter, twilio_webhooks: FakeTwilio
) -> None:
    for _ in range(REPLIES_PER_HOUR + 3):
        assert text("Thanks for your message!").status_code == 200

    assert len(twilio_webhooks.messages_to(USER_PHONE)) == REPLIES_PER_HOUR


def test_digits_texted_to_blink_are_not_kept(text: Texter) -> None:
    text("my code is 123456")

    inbound = Message.objects.get(direction=Message.Direction.INBOUND)
    assert inbound.body == f"my code is {REDACTED}"


def test_a_text_from_a_blink_user_is_filed_under_them(
    text: Texter, blink_user: BlinkUser
) -> None:
    text("HELP")

    inbound = Message.objects.get(direction=Message.Direction.INBOUND)
    reply = Message.objects.get(direction=Message.Direction.OUTBOUND)
    assert inbound.blink_user == reply.blink_user == blink_user


def test_texts_are_routed_by_the_number_they_were_sent_to(
    company: Company, other_company: Company, settings: Settings
) -> None:
    other_company.sms_number = BLINK_NUMBER
    other_company.save()
    shared = settings.BLINK_SMS_NUMBER
    # Saved behind the services' back: the webhook's memory of owners must be told.
    inbound_company_forget()

    assert inbound_company(to=BLINK_NUMBER) == other_company
    # The shared number belongs to the only company without a number of its own…
    assert inbound_company(to=shared) == company
    company.messaging_service_sid = "MG" + "c" * 32
    company.save()
    inbound_company_forget()
    assert inbound_company(to="+14155550999", messaging_service_sid="MG" + "c" * 32) == company

    # …and to nobody once two companies share it.
    other_company.sms_number = ""
    other_company.save()
    inbound_company_forget()
    assert inbound_company(to=shared) is None
    assert inbound_company(to="+14155550999") is None
