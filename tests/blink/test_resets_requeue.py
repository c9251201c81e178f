"""Requests whose task was lost (Redis restarted, a process died between its commit and the
publish, a directory worker that never came): beat's ``resets_requeue`` queues them again,
fails those no worker carried out within an hour and tells the user, and a newer request
replaces one that is no longer under way, so the user never gets two passwords."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone

from blink.audit import Actor
from blink.models import AuditEvent, BlinkUser, ResetRequest
from blink.resets import (
    EXPIRED_REASON,
    GIVE_UP_AFTER,
    REQUEUE_AFTER,
    SUPERSEDED_REASON,
    _stale_after,
    reset_request_create,
    resets_requeue,
)
from blink.tasks import reset_run
from clients.models import Client
from directory.models import Connection
from sms.backends.locmem import SentSms
from tests.broker import Broker
from tests.conftest import demo_blink_user, password_in

ADMIN = Actor(label="olivia", ip="127.0.0.1")


@pytest.fixture
def ava(acme_client: Client, demo_connection: Connection) -> BlinkUser:
    return demo_blink_user(acme_client, demo_connection, "+14155550166")


@pytest.fixture
def published(broker: Broker) -> Broker:
    """Where the requests' tasks go: a real broker no worker takes from, so each task is
    as good as lost unless the test runs it."""
    return broker


def ask(blink_user: BlinkUser, captured: Any, broker: Broker) -> ResetRequest:
    with broker.publishing(), captured(execute=True):
        return reset_request_create(blink_user=blink_user, actor=ADMIN, channel="console")


def requeue(broker: Broker) -> int:
    """Beat's sweep, publishing to ``broker``."""
    with broker.publishing():
        return resets_requeue()


def aged(request: ResetRequest, by: timedelta, **fields: Any) -> None:
    """Move the request back in time, as if it had been waiting ``by``."""
    ResetRequest.objects.filter(pk=request.pk).update(
        created_at=request.created_at - by, queued_at=request.queued_at - by, **fields)


def run_task(request_id: int, captured: Any) -> None:
    with captured(execute=True):
        reset_run.apply((request_id,))


def test_a_request_whose_task_was_lost_is_queued_again_and_carried_out_once(
    ava: BlinkUser, demo_connection: Connection, published: Broker,
    directory_calls: mock.MagicMock, sms_outbox: list[SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    request = ask(ava, django_capture_on_commit_callbacks, published)
    published.empty()

    assert requeue(published) == 0  # its task may still come
    aged(request, REQUEUE_AFTER + timedelta(seconds=1))
    assert requeue(published) == 1
    assert [(t.task, t.args, t.queue) for t in published.queued()] == [
        ("blink.tasks.reset_run", [request.pk], demo_connection.queue)]
    assert requeue(published) == 0  # not again for another five minutes

    # Queued again lately: a second click joins it rather than making a second password.
    assert ask(ava, django_capture_on_commit_callbacks, published) == request

    run_task(request.pk, django_capture_on_commit_callbacks)
    run_task(request.pk, django_capture_on_commit_callbacks)  # a duplicate changes nothing

    assert ResetRequest.objects.get().status == "sent"
    assert directory_calls.call_count == 1
    assert [password_in(sms["body"]) for sms in sms_outbox] == [directory_calls.call_args.args[2]]


def test_a_request_left_running_by_a_dead_worker_is_queued_again(
    ava: BlinkUser, published: Broker,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    request = ask(ava, django_capture_on_commit_callbacks, published)
    published.empty()
    aged(request, REQUEUE_AFTER + timedelta(seconds=1), status=ResetRequest.Status.RUNNING,
         started_at=timezone.now() - timedelta(seconds=10))

    assert requeue(published) == 0  # its run may still be going

    ResetRequest.objects.filter(pk=request.pk).update(
        started_at=timezone.now() - _stale_after() - timedelta(seconds=1))
    assert requeue(published) == 1
    assert len(published.queued("blink.tasks.reset_run")) == 1


def test_a_request_no_worker_carried_out_within_an_hour_fails_and_the_user_is_told(
    ava: BlinkUser, acme_client: Client, published: Broker,
    directory_calls: mock.MagicMock, sms_outbox: list[SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    acme_client.company.support_email = "help@acme-it.example"
    acme_client.company.save()
    request = ask(ava, django_capture_on_commit_callbacks, published)
    aged(request, GIVE_UP_AFTER + timedelta(seconds=1))

    with django_capture_on_commit_callbacks(execute=True):
        resets_requeue()

    failed = ResetRequest.objects.get()
    assert (failed.status, failed.reason) == ("failed", EXPIRED_REASON)
    assert [sms["body"] for sms in sms_outbox] == [
        "Blink could not reset your password just now. Please contact help@acme-it.example."]
    assert AuditEvent.objects.filter(action="reset.run", result="failed").count() == 1

    run_task(request.pk, django_capture_on_commit_callbacks)  # its task, at last

    directory_calls.assert_not_called()
    assert len(sms_outbox) == 1


def test_a_new_request_replaces_one_no_longer_under_way_and_only_it_sets_a_password(
    ava: BlinkUser, published: Broker, directory_calls: mock.MagicMock,
    sms_outbox: list[SentSms], django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    first = ask(ava, django_capture_on_commit_callbacks, published)
    aged(first, _stale_after() + timedelta(seconds=1))  # the directory's worker is down

    second = ask(ava, django_capture_on_commit_callbacks, published)

    assert second != first
    first.refresh_from_db()
    assert (first.status, first.reason) == ("failed", SUPERSEDED_REASON)
    # The worker comes back and takes both queued tasks, in order.
    with django_capture_on_commit_callbacks(execute=True):
        assert published.run("blink.tasks.reset_run") == 2

    assert directory_calls.call_count == 1
    assert len(sms_outbox) == 1
    assert password_in(sms_outbox[0]["body"]) == directory_calls.call_args.args[2]
    assert ResetRequest.objects.get(pk=second.pk).status == "sent"
