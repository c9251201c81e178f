"""``sms_send(deliver_here=True)``: a worker that also serves the ``sms`` queue hands the text
to the provider itself after the commit; any other process queues the send task as before."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from celery import Celery
from pytest_django.fixtures import Settings

import blink.celery
from clients.models import Company
from sms import services
from sms.backends import SmsError, locmem
from sms.models import Message
from sms.services import sms_send
from tests.broker import Broker
from tests.conftest import CENTRAL_QUEUES
from tests.sms.conftest import USER_PHONE, fresh


class FlakyBackend:
    """Fails with a temporary error, as Twilio does when it does not answer in time."""

    calls = 0

    def send(self, *, to: str, body: str, sender: str, messaging_service_sid: str = "",
             status_callback: str = "", validity_period: int = 0) -> str:
        FlakyBackend.calls += 1
        raise SmsError("Twilio did not answer within 10 s.", permanent=False, code="timeout")


@pytest.fixture
def queued(broker: Broker) -> Iterator[Broker]:
    """Where send tasks go: a real broker no worker takes from."""
    with broker.publishing():
        yield broker


def sends(broker: Broker) -> list[tuple[list[Any], str]]:
    """The send tasks waiting: (arguments, queue) each."""
    return [(task.args, task.queue) for task in broker.queued("sms.tasks.message_send")]


def _password_sms(company: Company, *, deliver_here: bool = True) -> Message:
    return sms_send(company=company, phone=USER_PHONE, kind="reset",
                    text="Your temporary password is:\n{secret}\n", secret="Tmp-Pass-8842",
                    deliver_here=deliver_here)


def test_the_test_process_is_no_worker_and_sends_through_the_task_as_before(
    company: Company, sms_outbox: list[locmem.SentSms], send_now: Callable[..., Any]
) -> None:
    assert not blink.celery.worker_consumes("sms")
    with mock.patch.object(services, "_deliver_here") as delivered_here:
        message = send_now(lambda: _password_sms(company))

    delivered_here.assert_not_called()  # the send task ran, eagerly, as it always has
    assert [sms["body"] for sms in sms_outbox] == ["Your temporary password is:\nTmp-Pass-8842\n"]
    assert fresh(message).status == Message.Status.SENT


def test_a_worker_serving_sms_hands_the_text_over_itself_after_the_commit(
    company: Company, sms_outbox: list[locmem.SentSms], send_now: Callable[..., Any],
    worker_queues: Callable[[frozenset[str]], None], queued: Broker,
) -> None:
    worker_queues(CENTRAL_QUEUES)

    message = send_now(lambda: _password_sms(company))

    assert sends(queued) == []
    assert [sms["body"] for sms in sms_outbox] == ["Your temporary password is:\nTmp-Pass-8842\n"]
    stored = fresh(message)
    assert (stored.status, stored.attempts, stored.sealed_body) == (Message.Status.SENT, 1, "")


def test_nothing_is_sent_before_the_commit(
    company: Company, sms_outbox: list[locmem.SentSms], send_now: Callable[..., Any],
    worker_queues: Callable[[frozenset[str]], None], django_capture_on_commit_callbacks: Any,
) -> None:
    worker_queues(CENTRAL_QUEUES)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message = _password_sms(company)

    assert sms_outbox == [] and fresh(message).status == Message.Status.QUEUED
    assert len(callbacks) == 1


def test_a_password_does_not_overtake_the_reply_still_queued_for_the_same_phone(
    company: Company, sms_outbox: list[locmem.SentSms], send_now: Callable[..., Any],
    worker_queues: Callable[[frozenset[str]], None], queued: Broker,
) -> None:
    worker_queues(CENTRAL_QUEUES)
    reply = send_now(lambda: sms_send(
        company=company, phone=USER_PHONE, kind="self_service",
        text="If this number is registered with Blink, you'll get a text in a moment."))
    queued.empty()  # look only at what comes next; the reply is still queued

    message = send_now(lambda: _password_sms(company))

    assert sends(queued) == [([message.pk], "sms")]  # behind the reply
    assert sms_outbox == []
    # Once the queue has sent them, the next password is handed over here again.
    Message.objects.filter(pk__in=[reply.pk, message.pk]).update(status=Message.Status.SENT)
    send_now(lambda: _password_sms(company))
    assert len(sms_outbox) == 1


def test_without_deliver_here_a_worker_still_queues_the_send_task(
    company: Company, sms_outbox: list[locmem.SentSms], send_now: Callable[..., Any],
    worker_queues: Callable[[frozenset[str]], None], queued: Broker,
) -> None:
    worker_queues(CENTRAL_QUEUES)

    message = send_now(lambda: _password_sms(company, deliver_here=False))

    assert sends(queued) == [([message.pk], "sms")]
    assert sms_outbox == []


def test_a_directory_worker_on_its_own_queue_leaves_the_text_to_the_sms_queue(
    company: Company, sms_outbox: list[locmem.SentSms], send_now: Callable[..., Any],
    worker_queues: Callable[[frozenset[str]], None], queued: Broker,
) -> None:
    worker_queues(frozenset({"dir.acme"}))

    message = send_now(lambda: _password_sms(company))

    assert sends(queued) == [([message.pk], "sms")]
    assert sms_outbox == []
    assert fresh(message).status == Message.Status.QUEUED


def test_a_temporary_failure_goes_to_the_sms_queue_as_the_tasks_first_retry(
    company: Company, settings: Settings, send_now: Callable[..., Any],
    worker_queues: Callable[[frozenset[str]], None], queued: Broker,
) -> None:
    settings.SMS_BACKEND = "tests.sms.test_deliver_here.FlakyBackend"
    FlakyBackend.calls = 0
    worker_queues(CENTRAL_QUEUES)

    message = send_now(lambda: _password_sms(company))

    assert FlakyBackend.calls == 1
    [retry] = queued.queued("sms.tasks.message_send")
    assert (retry.args, retry.queue, retry.retries) == ([message.pk], "sms", 1)
    assert 9 <= retry.countdown() <= 20  # retry_countdown(0)
    stored = fresh(message)
    assert (stored.status, stored.attempts, stored.error_code) == (
        Message.Status.QUEUED, 1, "timeout")
    assert stored.sealed_body != ""  # the same password goes out on the retry


def test_an_unexpected_error_is_logged_without_the_text_and_the_queue_takes_over(
    company: Company, send_now: Callable[..., Any], caplog: pytest.LogCaptureFixture,
    worker_queues: Callable[[frozenset[str]], None], queued: Broker,
) -> None:
    worker_queues(CENTRAL_QUEUES)

    def broken(*, message_id: int, final_attempt: bool, recorded: Message) -> str:
        raise RuntimeError("the database went away while sending "
                           "'Your temporary password is:\nTmp-Pass-8842\n'")

    with mock.patch.object(services, "message_deliver", side_effect=broken), \
            caplog.at_level(logging.INFO):
        message = send_now(lambda: _password_sms(company))

    assert "RuntimeError" in caplog.text and f"sms {message.pk}" in caplog.text
    assert "Tmp-Pass-8842" not in caplog.text
    assert sends(queued) == [([message.pk], "sms")]


@pytest.mark.parametrize(
    ("queues", "serves_sms"),
    [(["dir.acme"], False), (["default", "directory", "sms"], True), (None, False)],
    ids=["-Q dir.acme", "-Q default,directory,sms", "no -Q"],
)
def test_a_worker_records_at_start_up_whether_it_consumes_the_sms_queue(
    monkeypatch: pytest.MonkeyPatch, queues: list[str] | None, serves_sms: bool
) -> None:
    monkeypatch.setattr(blink.celery, "_consumed_queues", frozenset())
    # Blink's configuration in an app of its own, so the real app's queues stay untouched.
    app = Celery("blink", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")

    app.WorkController(queues=queues, pool_cls="solo", hostname="probe@localhost")

    assert blink.celery.worker_consumes("sms") is serves_sms
    if queues:
        assert blink.celery.worker_consumes(queues[0])
