"""The inbound webhook only hands a text, sealed, to a worker; the worker records it once per
MessageSid and acts on it. A text whose reply could not be queued waits and is queued
again; one that waited too long is dropped. The webhook remembers which company owns a
number instead of asking the database for every text."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest import mock

import kombu.exceptions
import pytest
from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.db import connection
from django.test import Client as HttpClient
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.fixtures import Settings

from blink.audit import SYSTEM
from blink.models import AuditEvent, BlinkUser, ResetRequest
from clients.models import Company
from clients.services import company_settings_update
from sms.inbound import (
    GIVE_UP_AFTER,
    REQUEUE_AFTER,
    inbound_act,
    inbound_company,
    inbound_requeue,
)
from sms.limits import PER_USER
from sms.models import Message, VerificationCode
from sms.services import REDACTED
from tests.broker import Broker, unreachable_broker
from tests.fakes.twilio import FakeTwilio
from tests.sms.conftest import (
    BLINK_NUMBER,
    STRANGER_PHONE,
    USER_PHONE,
    Queued,
    receive,
    text_blink,
)

PIN_TEXT = "RESET 482913"

def inbound() -> Message:
    return Message.objects.get(direction=Message.Direction.INBOUND)


def outbound_bodies() -> list[str]:
    return list(Message.objects.filter(direction=Message.Direction.OUTBOUND)
                .order_by("id").values_list("body", flat=True))


def test_the_webhook_hands_the_text_over_sealed_and_writes_nothing(
    webhook: Callable[..., Queued], blink_user: BlinkUser
) -> None:
    task = webhook(PIN_TEXT)

    assert not Message.objects.exists() and not ResetRequest.objects.exists()
    # Neither the PIN nor the phone can be read in the broker.
    assert "482913" not in repr(task) and USER_PHONE[1:] not in repr(task)

    assert receive(task) is not None

    recorded = inbound()
    assert (recorded.status, recorded.body, recorded.blink_user) == (
        "received", f"RESET {REDACTED}", blink_user)
    assert recorded.sealed_body == ""
    assert [b for b in outbound_bodies() if "registered with Blink" in b]
    assert ResetRequest.objects.get().blink_user == blink_user
    assert "482913" not in str(list(Message.objects.values()))


def test_a_message_sid_acts_once_however_often_it_is_queued(
    webhook: Callable[..., Queued]
) -> None:
    task = webhook("HELP", from_=STRANGER_PHONE)

    assert receive(task) is not None
    assert receive(task) is None

    assert Message.objects.filter(direction=Message.Direction.INBOUND).count() == 1
    assert len(outbound_bodies()) == 1


def test_the_webhook_asks_the_database_nothing_once_it_knows_the_company(
    webhook: Callable[..., Queued], blink_user: BlinkUser
) -> None:
    """The same work, and no lookup of the sender, for a Blink user and a stranger."""
    webhook("HELP")  # learns which company owns the number

    counts = []
    for phone in (USER_PHONE, STRANGER_PHONE):
        with CaptureQueriesContext(connection) as queries:
            webhook("RESET", from_=phone)
        counts.append(len(queries))

    assert counts == [0, 0]


def test_a_changed_number_is_seen_at_once(
    numbered: Company, django_capture_on_commit_callbacks: Any
) -> None:
    assert inbound_company(to=BLINK_NUMBER) == numbered

    with django_capture_on_commit_callbacks(execute=True):
        company_settings_update(company=numbered, actor=SYSTEM, name=numbered.name,
                                support_email=numbered.support_email,
                                site_url=numbered.site_url,
                                default_country=numbered.default_country,
                                sms_number="+14155550199")

    assert inbound_company(to=BLINK_NUMBER) is None
    assert inbound_company(to="+14155550199") == numbered


@pytest.mark.django_db(transaction=True)
def test_a_text_whose_reply_cannot_be_queued_waits_and_is_queued_again(
    webhook: Callable[..., Queued], blink_user: BlinkUser, settings: Settings, broker: Broker
) -> None:
    task = webhook(PIN_TEXT)

    with unreachable_broker(), pytest.raises(kombu.exceptions.OperationalError):
        receive(task)

    # Nothing of that run is left but the text, waiting as it came with its PIN sealed.
    waiting = inbound()
    assert (waiting.status, waiting.blink_user) == ("queued", None)
    assert waiting.sealed_body and "482913" not in waiting.sealed_body
    assert outbound_bodies() == []
    assert not ResetRequest.objects.exists()

    # Beat's next sweep hands it to a worker; while it still waits (the task lost, or the
    # workers behind), not again every minute, but once REQUEUE_AFTER has passed.
    with broker.publishing():
        assert inbound_requeue() == 1
        assert inbound_requeue() == 0
        Message.objects.filter(pk=waiting.pk).update(
            updated_at=timezone.now() - REQUEUE_AFTER - timedelta(seconds=1))
        assert inbound_requeue() == 1
    assert [(t.task, t.args, t.queue) for t in broker.queued()] == [
        ("sms.tasks.inbound_process", [waiting.pk], "sms")] * 2

    inbound_act(message_id=waiting.pk)

    assert (inbound().status, inbound().sealed_body) == ("received", "")
    assert ResetRequest.objects.get().blink_user == blink_user
    assert [b for b in outbound_bodies() if "registered with Blink" in b]
    # Acted on twice, counted once against the user's send caps.
    assert cache.get(f"sms-cap:user:{blink_user.pk}:{PER_USER[0][0]}") == 1


@pytest.mark.django_db(transaction=True)
def test_a_text_that_waited_over_an_hour_is_dropped_not_acted_on(
    webhook: Callable[..., Queued], blink_user: BlinkUser, broker: Broker
) -> None:
    task = webhook(PIN_TEXT)
    with unreachable_broker(), pytest.raises(kombu.exceptions.OperationalError):
        receive(task)
    Message.objects.filter(direction=Message.Direction.INBOUND).update(
        created_at=timezone.now() - GIVE_UP_AFTER - timedelta(seconds=1))

    with broker.publishing():
        assert inbound_requeue() == 0
    inbound_act(message_id=inbound().pk)

    assert broker.queued() == []
    dropped = inbound()
    assert (dropped.status, dropped.error_code, dropped.sealed_body) == ("failed", "expired", "")
    assert outbound_bodies() == []
    assert not ResetRequest.objects.exists()


def test_any_text_reaches_the_worker_as_the_user_typed_it(
    webhook: Callable[..., Queued], send_now: Callable[..., Any]
) -> None:
    task = webhook("  Réset! ")

    send_now(lambda: receive(task))

    assert inbound().body == "  Réset! "
    assert [b for b in outbound_bodies() if "registered with Blink" in b]


def test_a_worker_that_dies_acting_on_a_text_leaves_nothing_and_the_text_comes_again(
    webhook: Callable[..., Queued], blink_user: BlinkUser
) -> None:
    task = webhook("RESET")
    # The first worker found the sender and recorded the text, then died before its
    # transaction committed.
    with mock.patch("sms.inbound.inbound_handle", side_effect=SystemExit(1)), \
            pytest.raises(SystemExit):
        receive(task)
    assert not Message.objects.exists() and not ResetRequest.objects.exists()

    assert receive(task) is not None  # Celery hands the task out again (acks_late)

    assert inbound().status == "received"
    assert ResetRequest.objects.get().blink_user == blink_user
    assert len([b for b in outbound_bodies() if "registered with Blink" in b]) == 1


@pytest.mark.django_db(transaction=True)
def test_a_text_left_waiting_is_acted_on_once_when_its_message_id_comes_again(
    webhook: Callable[..., Queued], blink_user: BlinkUser
) -> None:
    task = webhook("RESET")
    with unreachable_broker(), pytest.raises(kombu.exceptions.OperationalError):
        receive(task)
    assert inbound().status == "queued"

    assert receive(task) is None  # the same MessageSid again

    assert inbound().status == "received"
    assert ResetRequest.objects.get().blink_user == blink_user
    assert len([b for b in outbound_bodies() if "registered with Blink" in b]) == 1
    assert receive(task) is None
    assert ResetRequest.objects.count() == 1


def test_a_reset_text_costs_a_known_number_of_queries(
    webhook: Callable[..., Queued], blink_user: BlinkUser,
    django_assert_max_num_queries: Any,
) -> None:
    """Finding the sender, recording the text, the neutral reply and the reset request,
    with its audit event, in one transaction (a guard against N+1 creeping in)."""
    task = webhook("RESET")

    with django_assert_max_num_queries(11):
        receive(task)

    assert ResetRequest.objects.get().blink_user == blink_user


@pytest.mark.parametrize("body", ["RESET 12-34", "reset ¹²³⁴", "Unlock 12 34", "RESET 4829"])
def test_nothing_after_reset_or_unlock_is_kept_however_the_pin_was_typed(
    webhook: Callable[..., Queued], blink_user: BlinkUser, body: str
) -> None:
    receive(webhook(body))

    recorded = inbound()
    assert recorded.body == f"{body.split()[0].upper()} {REDACTED}"
    assert recorded.sealed_body == ""
    for stored in Message.objects.values_list("body", flat=True):
        assert not any(c in stored for c in "0123456789¹²³⁴"), stored


@pytest.mark.django_db(transaction=True)
def test_a_refused_webhook_leaves_a_waiting_text_of_the_same_sid_alone(
    webhook: Callable[..., Queued], blink_user: BlinkUser, twilio_webhooks: FakeTwilio,
    numbered: Company, client: HttpClient, settings: Settings,
) -> None:
    task = webhook("RESET")
    with unreachable_broker(), pytest.raises(kombu.exceptions.OperationalError):
        receive(task)  # a worker recorded it, then could not queue the reply
    waiting = inbound()

    # The same MessageSid again, to a web process whose broker is down.
    with unreachable_broker():
        response = text_blink(client, twilio_webhooks, numbered, "RESET",
                              sid=waiting.provider_id)

    assert response.status_code == 503
    assert inbound().status == "queued"  # still there for inbound_requeue


@pytest.mark.django_db(transaction=True)
def test_a_pause_stands_with_its_reason_when_the_text_that_caused_it_must_wait(
    webhook: Callable[..., Queued], blink_user: BlinkUser
) -> None:
    blink_user.client.sms_reset_needs_pin = True
    blink_user.client.save()
    BlinkUser.objects.filter(pk=blink_user.pk).update(pin_hash=make_password("4821"))
    now = timezone.now()
    for _ in range(9):  # nine wrong codes or PINs today already
        VerificationCode.objects.create(blink_user=blink_user, purpose="sms_pin", code_hash="",
                                        phone=USER_PHONE, expires_at=now, attempts=1,
                                        revoked_at=now)
    task = webhook("RESET 0000")

    with unreachable_broker(), pytest.raises(kombu.exceptions.OperationalError):
        receive(task)  # the tenth: the user is paused, then the reply cannot be queued

    blink_user.refresh_from_db()
    assert blink_user.paused_until is not None and blink_user.paused_until > timezone.now()
    assert AuditEvent.objects.filter(action="self_service.paused").count() == 1
    assert inbound().status == "queued"
