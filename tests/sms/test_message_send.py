"""The send task: one provider call per message however often the task runs, retries that
back off, and nothing left behind when a message is done."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, ClassVar
from unittest import mock

import pytest
from celery.exceptions import Retry, SoftTimeLimitExceeded
from django.utils import timezone
from pytest_django.fixtures import Settings

from clients.models import Company
from sms.backends import SmsError, locmem
from sms.models import Message, OptOut
from sms.services import (
    RETRY_LOST_AFTER,
    SENDING_LEASE,
    UNSENT_GIVE_UP_AFTER,
    UNSENT_REQUEUE_AFTER,
    message_deliver,
    messages_requeue,
    retry_countdown,
    sms_send,
)
from sms.tasks import MAX_RETRIES, message_send
from tests.broker import Broker
from tests.sms.conftest import USER_PHONE, fresh


class SecondWorkerBackend:
    """While the provider call is in flight, a second worker runs the same task."""

    calls: ClassVar[list[str]] = []

    def send(self, *, to: str, body: str, sender: str, messaging_service_sid: str = "",
             status_callback: str = "", validity_period: int = 0) -> str:
        SecondWorkerBackend.calls.append(body)
        message = Message.objects.get(phone=to)
        message_send.apply(args=(message.pk,))
        return f"SM{len(self.calls):032d}"


class FlakyBackend:
    """Fails with a temporary error until told otherwise."""

    def send(self, *, to: str, body: str, sender: str, messaging_service_sid: str = "",
             status_callback: str = "", validity_period: int = 0) -> str:
        raise SmsError("Twilio did not answer within 10 s.", permanent=False, code="timeout")


class OutOfTimeBackend:
    """Celery's soft time limit strikes during the provider call."""

    def send(self, *, to: str, body: str, sender: str, messaging_service_sid: str = "",
             status_callback: str = "", validity_period: int = 0) -> str:
        raise SoftTimeLimitExceeded()


class BrokenBackend:
    def send(self, *, to: str, body: str, sender: str, messaging_service_sid: str = "",
             status_callback: str = "", validity_period: int = 0) -> str:
        raise RuntimeError("a bug")


def _queued(company: Company) -> Message:
    # Not inside send_now: the task is not run, the message stays queued.
    return sms_send(company=company, phone=USER_PHONE, text="Code {secret}", secret="123456",
                    kind="test")


@contextmanager
def _as_worker(*, retries: int) -> Iterator[None]:
    """Run the task body inside as a worker would on its ``retries``-th retry (not eagerly)."""
    request: Any = {"retries": retries, "is_eager": False}
    message_send.push_request(**request)
    try:
        yield
    finally:
        message_send.pop_request()


def _retried(message: Message, *, retries: int) -> dict[str, Any]:
    """Run the task body as a worker on its ``retries``-th retry, which must schedule
    another; returns what it asked ``retry`` for."""
    with _as_worker(retries=retries), \
            mock.patch.object(message_send, "retry", side_effect=Retry()) as retry, \
            pytest.raises(Retry):
        message_send.run(message.pk)
    return dict(retry.call_args.kwargs)


def test_two_runs_of_the_task_make_one_provider_call(
    company: Company, settings: Settings
) -> None:
    settings.SMS_BACKEND = "tests.sms.test_message_send.SecondWorkerBackend"
    SecondWorkerBackend.calls.clear()
    message = _queued(company)

    message_send.apply(args=(message.pk,))
    message_send.apply(args=(message.pk,))

    assert SecondWorkerBackend.calls == ["Code 123456"]
    assert fresh(message).status == Message.Status.SENT
    assert fresh(message).attempts == 1


def test_a_redelivered_task_for_a_sent_message_does_nothing(
    company: Company, sms_outbox: list[locmem.SentSms], send_now: Callable[..., Any]
) -> None:
    message = send_now(lambda: _queued(company))
    sent = fresh(message)

    message_send.apply(args=(message.pk,))

    assert len(sms_outbox) == 1
    assert fresh(message).updated_at == sent.updated_at


def test_a_task_for_a_deleted_message_returns_quietly(
    company: Company, sms_outbox: list[locmem.SentSms]
) -> None:
    message = _queued(company)
    Message.objects.filter(pk=message.pk).delete()

    message_send.apply(args=(message.pk,))

    assert sms_outbox == []


def test_a_message_abandoned_mid_send_is_taken_over_after_the_lease(
    company: Company, sms_outbox: list[locmem.SentSms]
) -> None:
    message = _queued(company)
    # A worker claimed it and was killed before it could record anything.
    Message.objects.filter(pk=message.pk).update(status=Message.Status.SENDING, attempts=1,
                                                 updated_at=timezone.now())
    message_send.apply(args=(message.pk,))
    assert sms_outbox == []

    Message.objects.filter(pk=message.pk).update(
        updated_at=timezone.now() - timedelta(minutes=10))
    message_send.apply(args=(message.pk,))

    assert [sms["body"] for sms in sms_outbox] == ["Code 123456"]
    assert fresh(message).status == Message.Status.SENT
    assert fresh(message).attempts == 2


def test_sent_messages_keep_no_secret(
    company: Company, sms_outbox: list[locmem.SentSms], send_now: Callable[..., Any]
) -> None:
    message = send_now(lambda: _queued(company))

    stored = fresh(message)
    assert stored.status == Message.Status.SENT
    assert stored.sealed_body == ""
    assert "123456" not in stored.body
    assert sms_outbox[0]["body"] == "Code 123456"
    assert sms_outbox[0]["status_callback"] == "https://blink.acme-it.example/sms/twilio/status"


def test_in_a_worker_a_temporary_failure_is_queued_again_with_backoff(
    company: Company, settings: Settings
) -> None:
    settings.SMS_BACKEND = "tests.sms.test_message_send.FlakyBackend"
    message = _queued(company)

    asked = _retried(message, retries=2)

    assert 40 <= asked["countdown"] <= 50
    assert asked["queue"] == "sms"
    stored = fresh(message)
    assert stored.status == Message.Status.QUEUED
    assert stored.sealed_body != ""
    assert stored.error_code == "timeout"
    assert "tries again" in stored.error_message


def test_in_a_worker_the_last_retry_fails_the_message(
    company: Company, settings: Settings
) -> None:
    settings.SMS_BACKEND = "tests.sms.test_message_send.FlakyBackend"
    message = _queued(company)

    with _as_worker(retries=MAX_RETRIES), mock.patch.object(message_send, "retry") as retry:
        message_send.run(message.pk)

    retry.assert_not_called()
    stored = fresh(message)
    assert stored.status == Message.Status.FAILED
    assert stored.sealed_body == ""
    assert "gave up" in stored.error_message


def test_backoff_doubles_up_to_a_cap_with_jitter() -> None:
    floors = [10, 20, 40, 80, 160, 300, 300]
    for retries, floor in enumerate(floors):
        countdowns = {retry_countdown(retries) for _ in range(20)}
        assert all(floor <= c <= floor + 10 for c in countdowns)
        assert len(countdowns) > 1


def test_an_unexpected_error_fails_the_message_instead_of_looping(
    company: Company, settings: Settings
) -> None:
    settings.SMS_BACKEND = "tests.sms.test_message_send.BrokenBackend"
    message = _queued(company)

    assert message_deliver(message_id=message.pk) == "failed"

    stored = fresh(message)
    assert (stored.status, stored.error_code, stored.sealed_body) == (
        Message.Status.FAILED, "error", "")


def test_a_send_cut_short_by_the_time_limit_waits_in_the_queue_with_its_text(
    company: Company, settings: Settings
) -> None:
    """A reset that spent its task's time in a slow directory must not lose its password
    text to the time limit."""
    settings.SMS_BACKEND = "tests.sms.test_message_send.OutOfTimeBackend"
    message = _queued(company)

    with pytest.raises(SoftTimeLimitExceeded):
        message_deliver(message_id=message.pk)

    stored = fresh(message)
    assert stored.status == Message.Status.QUEUED and stored.sealed_body

    # In the send task, it is tried again shortly: a code lives only ten minutes.
    assert _retried(message, retries=0)["countdown"] <= 20
    assert fresh(message).status == Message.Status.QUEUED


# -- Messages whose task was lost --------------------------------------------------------


def _aged(message: Message, age: timedelta) -> None:
    then = timezone.now() - age
    Message.objects.filter(pk=message.pk).update(created_at=then, updated_at=then)


def test_a_message_whose_task_was_lost_is_queued_again_and_sent(
    company: Company, settings: Settings, send_now: Callable[..., Any],
    sms_outbox: list[locmem.SentSms], broker: Broker,
) -> None:
    """Say the broker refused the send task after the commit: the message sits queued."""
    lost = _queued(company)
    retrying = _queued(company)
    Message.objects.filter(pk=retrying.pk).update(attempts=1)  # its retry is scheduled

    with broker.publishing():
        assert messages_requeue() == 0  # not before it has waited five minutes
        _aged(lost, UNSENT_REQUEUE_AFTER + timedelta(seconds=1))
        _aged(retrying, UNSENT_REQUEUE_AFTER + timedelta(seconds=1))
        assert messages_requeue() == 1
        assert messages_requeue() == 0  # not one more task a minute while it waits
    assert [(t.task, t.args, t.queue) for t in broker.queued()] == [
        ("sms.tasks.message_send", [lost.pk], "sms")]

    _aged(lost, UNSENT_REQUEUE_AFTER + timedelta(seconds=1))  # that task was lost too
    send_now(messages_requeue)

    assert fresh(lost).status == Message.Status.SENT
    assert [sms["body"] for sms in sms_outbox] == ["Code 123456"]


def test_a_message_left_sending_by_a_killed_worker_goes_out_after_the_lease(
    company: Company, send_now: Callable[..., Any], sms_outbox: list[locmem.SentSms],
    broker: Broker,
) -> None:
    """The killed worker's task came straight back, found the message taken and ended:
    nothing but the sweep would ever send it, and its text would stay sealed."""
    message = _queued(company)
    Message.objects.filter(pk=message.pk).update(status=Message.Status.SENDING, attempts=1,
                                                 updated_at=timezone.now())
    message_send.apply(args=(message.pk,))  # the task handed back at once: skipped
    with broker.publishing():
        assert messages_requeue() == 0  # still within the lease
    Message.objects.filter(pk=message.pk).update(
        updated_at=timezone.now() - SENDING_LEASE - timedelta(seconds=1))

    send_now(messages_requeue)

    assert [sms["body"] for sms in sms_outbox] == ["Code 123456"]
    assert (fresh(message).status, fresh(message).sealed_body) == ("sent", "")


def test_a_message_whose_retry_was_lost_is_queued_again(
    company: Company, send_now: Callable[..., Any], sms_outbox: list[locmem.SentSms],
    broker: Broker,
) -> None:
    message = _queued(company)
    Message.objects.filter(pk=message.pk).update(attempts=1)  # tried; its retry never came
    _aged(message, RETRY_LOST_AFTER - timedelta(seconds=30))
    with broker.publishing():
        assert messages_requeue() == 0  # its retry may still come
    _aged(message, RETRY_LOST_AFTER + timedelta(seconds=1))

    send_now(messages_requeue)

    assert fresh(message).status == Message.Status.SENT
    assert [sms["body"] for sms in sms_outbox] == ["Code 123456"]


def test_a_message_that_waited_over_an_hour_is_failed_and_forgets_its_secret(
    company: Company, sms_outbox: list[locmem.SentSms], broker: Broker,
) -> None:
    stale = _queued(company)
    _aged(stale, UNSENT_GIVE_UP_AFTER + timedelta(seconds=1))

    with broker.publishing():
        assert messages_requeue() == 0

    assert broker.queued() == []
    dropped = fresh(stale)
    assert (dropped.status, dropped.error_code, dropped.sealed_body) == ("failed", "expired", "")
    assert sms_outbox == []

    # So is one a dead run left "sending" an hour ago.
    lost = _queued(company)
    _aged(lost, UNSENT_GIVE_UP_AFTER + timedelta(seconds=1))
    Message.objects.filter(pk=lost.pk).update(status=Message.Status.SENDING, attempts=1)
    with broker.publishing():
        assert messages_requeue() == 0
    dropped = fresh(lost)
    assert (dropped.status, dropped.error_code, dropped.sealed_body) == ("failed", "expired", "")
    assert "may or may not have gone" in dropped.error_message
    assert sms_outbox == []


def test_a_text_waiting_when_its_number_texts_stop_is_never_sent(
    company: Company, sms_outbox: list[locmem.SentSms]
) -> None:
    """STOP came while the text waited in the queue (or for a retry): nothing more goes,
    and its sealed text is erased."""
    message = _queued(company)
    OptOut.objects.create(phone=USER_PHONE)

    message_send.apply(args=(message.pk,))

    assert sms_outbox == []
    dropped = fresh(message)
    assert (dropped.status, dropped.error_code, dropped.sealed_body) == (
        Message.Status.FAILED, "opted_out", "")
