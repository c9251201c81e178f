"""RESET and UNLOCK by SMS, through Twilio's signed webhook, on the demo directory: the user
gets a must-change password by text, every number gets the same neutral reply, a PIN guards
the clients that ask for one, and the send caps answer once."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.db import connection as db_connection
from django.test import Client as HttpClient
from django.utils import timezone

from blink.audit import SYSTEM
from blink.models import AuditEvent, BlinkUser, ResetRequest
from clients.models import Client, Company
from clients.services import client_create
from directory.demo import POLICY, DemoDirectory
from directory.models import Connection
from sms.inbound import inbound_requeue, neutral_reply
from sms.limits import PER_USER
from sms.models import Message, OptOut, VerificationCode
from tests.broker import unreachable_broker
from tests.conftest import demo_blink_user, password_in
from tests.fakes.twilio import FakeTwilio
from tests.servers import unavailable
from tests.sms.conftest import STRANGER_PHONE, USER_PHONE, text_blink

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
PIN = "4821"
Texter = Callable[..., Any]


@pytest.fixture
def demo(acme_client: Client, demo_connection: Connection) -> Connection:
    return demo_connection


@pytest.fixture
def alex(acme_client: Client, demo: Connection) -> BlinkUser:
    return demo_blink_user(acme_client, demo, USER_PHONE)


@pytest.fixture
def text(twilio_webhooks: FakeTwilio, numbered: Company, client: HttpClient,
         send_now: Callable[..., Any]) -> Texter:
    """Text the Blink number through the signed webhook; tasks run as after the commit."""

    def send(body: str, *, from_: str = USER_PHONE, sid: str | None = None) -> Any:
        return send_now(lambda: text_blink(client, twilio_webhooks, numbered, body,
                                           from_=from_, sid=sid))

    return send


def bodies(fake: FakeTwilio, phone: str = USER_PHONE) -> list[str]:
    return [m.body for m in fake.messages_to(phone)]


def assert_kept_nowhere(secret: str, caplog: pytest.LogCaptureFixture) -> None:
    """SECURITY.md case 14: no stored message, audit event, request or log line holds it."""
    assert len(secret) >= 4
    for body, sealed in Message.objects.values_list("body", "sealed_body"):
        assert secret not in body
        assert sealed == ""
    for detail, actor, target in AuditEvent.objects.values_list("detail", "actor_label",
                                                                "target_label"):
        assert secret not in f"{detail} {actor} {target}"
    for reason, sealed in ResetRequest.objects.values_list("reason", "sealed_password"):
        assert secret not in reason and sealed == ""
    assert secret not in caplog.text


# -- RESET and UNLOCK for an Active user --------------------------------------------------------


def test_reset_by_sms_texts_a_password_that_must_be_changed(
    text: Texter, twilio_webhooks: FakeTwilio, numbered: Company, alex: BlinkUser,
    demo: Connection, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    response = text("RESET")

    assert response.status_code == 200
    assert response.content.decode() == EMPTY_TWIML
    request = ResetRequest.objects.get()
    assert (request.blink_user, request.channel, request.kind, request.status) == (
        alex, "sms", "reset", "sent")
    neutral, password_text = bodies(twilio_webhooks)
    assert neutral == neutral_reply(numbered)
    assert password_text.startswith(f"Your temporary password for {alex.username} is:")
    password = password_in(password_text)
    assert DemoDirectory(demo.pk).sign_in(alex.object_id, password) == "must_change"
    assert_kept_nowhere(password, caplog)
    events = AuditEvent.objects.filter(target_label=alex.username).order_by("id")
    assert [(e.action, e.result) for e in events] == [("reset.request", "ok"),
                                                      ("reset.run", "ok")]
    assert "SMS from •••• 0123" in events[0].actor_label


def test_unlock_by_sms_keeps_the_password(
    text: Texter, twilio_webhooks: FakeTwilio, alex: BlinkUser, demo: Connection
) -> None:
    directory = DemoDirectory(demo.pk)
    directory.reset_password(alex.object_id, "Known-Pass-4466", must_change=False)
    for _ in range(POLICY.lockout_threshold):
        directory.sign_in(alex.object_id, "wrong")
    assert directory.sign_in(alex.object_id, "Known-Pass-4466") == "locked"

    text("UNLOCK")

    assert ResetRequest.objects.get().kind == "unlock"
    assert directory.sign_in(alex.object_id, "Known-Pass-4466") == "ok"
    assert "is unlocked. Your password has not changed." in bodies(twilio_webhooks)[-1]


@pytest.mark.parametrize("body", [" reset ", "RESET!", "Réset", "reset.", "ＲＥＳＥＴ"])
def test_spacing_case_punctuation_and_accents_do_not_matter(
    text: Texter, twilio_webhooks: FakeTwilio, alex: BlinkUser, body: str
) -> None:
    text(body)

    assert ResetRequest.objects.get().status == "sent"
    assert bodies(twilio_webhooks)[-1].startswith("Your temporary password")


def test_the_same_message_sid_twice_resets_once(
    text: Texter, twilio_webhooks: FakeTwilio, alex: BlinkUser
) -> None:
    sid = "SM" + "a" * 32
    first, second = text("RESET", sid=sid), text("RESET", sid=sid)

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.content.decode() == EMPTY_TWIML
    assert ResetRequest.objects.count() == 1
    assert len(bodies(twilio_webhooks)) == 2  # the neutral reply and one password


@pytest.mark.django_db(transaction=True)
def test_the_same_message_delivered_twice_at_once_resets_once(
    twilio_webhooks: FakeTwilio, numbered: Company, alex: BlinkUser
) -> None:
    if db_connection.vendor != "postgresql":
        unavailable("Concurrent webhooks need PostgreSQL (SQLite serialises writers).")
    sid = "SM" + "b" * 32
    start = threading.Barrier(2)
    answers: list[int] = []

    def deliver() -> None:
        try:
            start.wait(timeout=10)
            answers.append(text_blink(HttpClient(), twilio_webhooks, numbered, "RESET",
                                      sid=sid).status_code)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert answers == [200, 200]
    assert ResetRequest.objects.count() == 1
    assert Message.objects.filter(direction="in").count() == 1
    assert len([b for b in bodies(twilio_webhooks) if "temporary password" in b]) == 1


# -- The same neutral reply for every number -----------------------------------------------------


@pytest.fixture(params=["unknown", "not activated", "left the directory", "paused",
                        "disabled in the directory", "privileged", "another company's user",
                        "archived client", "opted out"])
def not_resettable(request: pytest.FixtureRequest, acme_client: Client, demo: Connection,
                   rival_client: Client) -> str:
    """A number that texts RESET but must get nothing more than the neutral reply."""
    case = request.param
    if case == "not activated":
        demo_blink_user(acme_client, demo, STRANGER_PHONE, status=BlinkUser.Status.VERIFYING_PHONE)
    elif case == "left the directory":
        demo_blink_user(acme_client, demo, STRANGER_PHONE, status=BlinkUser.Status.LEFT_DIRECTORY)
    elif case == "paused":
        user = demo_blink_user(acme_client, demo, STRANGER_PHONE)
        BlinkUser.objects.filter(pk=user.pk).update(
            paused_until=timezone.now() + timedelta(hours=3))
    elif case == "disabled in the directory":
        demo_blink_user(acme_client, demo, STRANGER_PHONE, enabled=False)
    elif case == "privileged":
        demo_blink_user(acme_client, demo, STRANGER_PHONE, protected=True)
    elif case == "another company's user":
        rival_demo = Connection.objects.create(client=rival_client, kind="demo")
        BlinkUser.objects.create(client=rival_client, connection=rival_demo, object_id="x",
                                 username="rival", phone=STRANGER_PHONE, status="active")
    elif case == "archived client":
        hooli = client_create(company=acme_client.company, actor=SYSTEM, name="Hooli")
        hooli_demo = Connection.objects.create(client=hooli, kind="demo")
        BlinkUser.objects.create(client=hooli, connection=hooli_demo, object_id="x",
                                 username="gavin", phone=STRANGER_PHONE, status="active")
        Client.objects.filter(pk=hooli.pk).update(archived_at=timezone.now())
    elif case == "opted out":
        demo_blink_user(acme_client, demo, STRANGER_PHONE)
        OptOut.objects.create(phone=STRANGER_PHONE)
    return str(case)


@pytest.mark.parametrize("keyword", ["RESET", "UNLOCK"])
def test_every_number_gets_the_same_neutral_reply_and_nothing_else(
    text: Texter, twilio_webhooks: FakeTwilio, numbered: Company, alex: BlinkUser,
    not_resettable: str, keyword: str,
) -> None:
    known = text(keyword)
    other = text(keyword, from_=STRANGER_PHONE)

    assert (other.status_code, other.content, other.headers["Content-Type"]) == (
        known.status_code, known.content, known.headers["Content-Type"])
    assert ResetRequest.objects.get().blink_user == alex
    expected = [] if not_resettable == "opted out" else [bodies(twilio_webhooks)[0]]
    assert bodies(twilio_webhooks, STRANGER_PHONE) == expected
    assert bodies(twilio_webhooks)[0] == neutral_reply(numbered)
    refused = AuditEvent.objects.filter(result="refused", action=f"{keyword.lower()}.request")
    if not_resettable in ("unknown", "another company's user"):
        assert not refused.exists()
    else:
        [event] = refused
        assert event.detail["channel"] == "sms"
        assert event.detail["reason"]


# -- PIN --------------------------------------------------------------------------------------


@pytest.fixture
def pin_client(acme_client: Client, alex: BlinkUser) -> Client:
    acme_client.sms_reset_needs_pin = True
    acme_client.save()
    BlinkUser.objects.filter(pk=alex.pk).update(pin_hash=make_password(PIN))
    return acme_client


def test_with_a_pin_client_reset_needs_the_pin(
    text: Texter, twilio_webhooks: FakeTwilio, pin_client: Client, alex: BlinkUser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    text(f"RESET {PIN}")

    assert ResetRequest.objects.get().status == "sent"
    assert bodies(twilio_webhooks)[-1].startswith("Your temporary password")
    inbound = Message.objects.get(direction="in")
    assert PIN not in inbound.body
    assert_kept_nowhere(PIN, caplog)


@pytest.mark.parametrize("body", ["RESET", "RESET 1111", "reset 48210", "UNLOCK",
                                  "UNLOCK 9999", "RESET ٤٨٢١"])
def test_a_wrong_or_missing_pin_counts_and_gets_only_the_neutral_reply(
    text: Texter, twilio_webhooks: FakeTwilio, numbered: Company, pin_client: Client,
    alex: BlinkUser, body: str,
) -> None:
    response = text(body)

    assert response.content.decode() == EMPTY_TWIML
    assert not ResetRequest.objects.exists()
    assert bodies(twilio_webhooks) == [neutral_reply(numbered)]
    assert VerificationCode.objects.filter(blink_user=alex, purpose="sms_pin").count() == 1
    [event] = AuditEvent.objects.filter(result="refused")
    assert event.detail["reason"] in ("wrong PIN", "no PIN")


def test_ten_wrong_pins_pause_self_service_for_a_day(
    text: Texter, twilio_webhooks: FakeTwilio, pin_client: Client, alex: BlinkUser
) -> None:
    for attempt in range(10):
        text(f"RESET {1000 + attempt}", sid=None)
    alex.refresh_from_db()
    assert alex.paused_until is not None
    assert alex.paused_until > timezone.now() + timedelta(hours=23)
    assert AuditEvent.objects.filter(action="self_service.paused").count() == 1

    text(f"RESET {PIN}")

    assert not ResetRequest.objects.exists()
    assert not [b for b in bodies(twilio_webhooks) if "temporary" in b]


def test_a_user_without_a_pin_on_a_pin_client_is_refused_and_the_admin_sees_why(
    text: Texter, pin_client: Client, alex: BlinkUser
) -> None:
    BlinkUser.objects.filter(pk=alex.pk).update(pin_hash="")

    text("RESET 1234")

    assert not ResetRequest.objects.exists()
    [event] = AuditEvent.objects.filter(result="refused")
    assert "has none" in event.detail["reason"]
    assert not VerificationCode.objects.filter(purpose="sms_pin").exists()


# -- Send caps ------------------------------------------------------------------------------


def test_a_user_over_the_send_cap_is_told_once_when_to_try_again(
    text: Texter, twilio_webhooks: FakeTwilio, alex: BlinkUser
) -> None:
    window, limit = PER_USER[0]
    for _ in range(limit):
        text("RESET")
    assert ResetRequest.objects.count() == limit

    before = timezone.now()
    text("RESET")
    text("RESET")
    text("UNLOCK")

    assert ResetRequest.objects.count() == limit
    told = [b for b in bodies(twilio_webhooks) if "Try again" in b]
    assert len(told) == 1
    match = re.search(r"Try again after (\d\d):(\d\d) UTC\.$", told[0])
    assert match, told[0]
    at = before + timedelta(seconds=window)
    assert (int(match[1]), int(match[2])) in {(at.hour, at.minute),
                                              ((at + timedelta(minutes=1)).hour,
                                               (at + timedelta(minutes=1)).minute)}
    refused = AuditEvent.objects.filter(result="refused").order_by("id")
    assert [e.detail["told"] for e in refused] == ["yes", "already told", "already told"]
    assert all("send cap" in e.detail["reason"] for e in refused)


# -- The broker is down ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_a_reset_answers_503_and_waits_with_nothing_done(
    twilio_webhooks: FakeTwilio, numbered: Company, pin_client: Client, alex: BlinkUser,
    client: HttpClient,
) -> None:
    sid = "SM" + "c" * 32
    with unreachable_broker():
        down = text_blink(client, twilio_webhooks, numbered, f"RESET {PIN}", sid=sid)
        wrong_pin = text_blink(client, twilio_webhooks, numbered, "RESET 0000")

    assert (down.status_code, down.headers["Retry-After"]) == (503, "30")
    assert wrong_pin.status_code == 503
    # Both texts wait, PINs sealed; nothing is acted on, the wrong PIN not even counted.
    waiting = list(Message.objects.order_by("id"))
    assert [(m.direction, m.status) for m in waiting] == [("in", "queued")] * 2
    assert not any(pin in m.body + m.sealed_body for m in waiting for pin in (PIN, "0000"))
    assert not ResetRequest.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="reset.").exists()
    assert not VerificationCode.objects.exists()
    assert twilio_webhooks.accepted == []

    again = text_blink(client, twilio_webhooks, numbered, f"RESET {PIN}", sid=sid)

    assert again.status_code == 200
    assert ResetRequest.objects.get().status == "sent"
    assert list(AuditEvent.objects.filter(action__startswith="reset.").exclude(result="refused")
                .order_by("id").values_list("action", "result")) == [("reset.request", "ok"),
                                                      ("reset.run", "ok")]
    assert bodies(twilio_webhooks)[-1].startswith("Your temporary password")

    # Twilio never delivers the other again; beat's next sweep acts on it, as it came.
    assert inbound_requeue() == 1
    assert not Message.objects.filter(status="queued").exists()
    assert VerificationCode.objects.filter(purpose="sms_pin").count() == 1
    assert AuditEvent.objects.get(action="reset.request", result="refused").detail["reason"] \
        == "wrong PIN"
    assert ResetRequest.objects.count() == 1
