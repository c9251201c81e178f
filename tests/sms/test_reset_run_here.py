"""A texted RESET taken by a worker that also serves the directory's queue (docker-compose's
central worker and a directory in Blink's reach): the reset runs right there once the text's
transaction commits, and the task it queues is only a backstop, due once the request would
look stale. A worker that does not serve that queue (an on-premises directory) leaves the
reset to the queue, as the console does."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError
from django.utils import timezone

from blink.models import BlinkUser, ResetRequest
from blink.resets import _stale_after
from clients.models import Client
from directory.models import Connection
from sms.inbound import neutral_reply
from sms.models import Message
from tests.broker import Broker
from tests.conftest import CENTRAL_QUEUES, demo_blink_user, password_in
from tests.fakes.twilio import FakeTwilio
from tests.sms.conftest import USER_PHONE, Queued, receive

BACKSTOP_SECONDS = django_settings.CELERY_TASK_TIME_LIMIT + 31


@pytest.fixture
def alex(acme_client: Client, demo_connection: Connection) -> BlinkUser:
    return demo_blink_user(acme_client, demo_connection, USER_PHONE)


@pytest.fixture
def published(broker: Broker) -> Iterator[Broker]:
    """Tasks go to a real broker no worker takes from, for the test to read or run."""
    with broker.publishing():
        yield broker


def worker_takes(task: Queued, captured: Any) -> None:
    """The worker runs the inbound task; its on-commit work runs as after the commit."""
    with captured(execute=True):
        receive(task)


def send_tasks_run(broker: Broker) -> None:
    """The sms queue's worker takes the send tasks, in the order they were queued."""
    broker.run("sms.tasks.message_send")


def test_the_worker_resets_at_once_and_queues_only_a_backstop(
    webhook: Callable[..., Queued], alex: BlinkUser, demo_connection: Connection,
    worker_queues: Callable[[frozenset[str]], None], published: Broker,
    directory_calls: mock.MagicMock, twilio_webhooks: FakeTwilio,
    django_capture_on_commit_callbacks: Any,
) -> None:
    task = webhook("RESET")
    worker_queues(CENTRAL_QUEUES)

    worker_takes(task, django_capture_on_commit_callbacks)

    request = ResetRequest.objects.get()
    assert (request.status, request.blink_user) == ("sent", alex)
    assert directory_calls.call_count == 1
    [backstop] = published.queued("blink.tasks.reset_run")
    assert (backstop.args, backstop.queue) == ([request.pk], demo_connection.queue)
    assert BACKSTOP_SECONDS - 5 < backstop.countdown() <= BACKSTOP_SECONDS
    assert _stale_after().total_seconds() + 1 == BACKSTOP_SECONDS
    # The neutral reply went to the queue first; the password waits behind it, in order.
    send_tasks_run(published)
    neutral, password_text = [m.body for m in twilio_webhooks.messages_to(USER_PHONE)]
    assert neutral == neutral_reply(alex.client.company)
    assert password_in(password_text) == directory_calls.call_args.args[2]

    # The backstop comes due, finds the request done, and does nothing.
    with django_capture_on_commit_callbacks(execute=True):
        assert published.run("blink.tasks.reset_run") == 1  # the queued backstop

    assert directory_calls.call_count == 1
    assert len(twilio_webhooks.messages_to(USER_PHONE)) == 2
    assert ResetRequest.objects.get().status == "sent"


def test_a_run_cut_short_in_the_worker_is_finished_by_the_backstop_with_its_password(
    webhook: Callable[..., Queued], alex: BlinkUser,
    worker_queues: Callable[[frozenset[str]], None], published: Broker,
    directory_calls: mock.MagicMock, twilio_webhooks: FakeTwilio,
    django_capture_on_commit_callbacks: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    task = webhook("RESET")
    worker_queues(CENTRAL_QUEUES)
    # The directory said yes, then the database went away before the text was recorded.
    with mock.patch("blink.resets.sms_send", side_effect=OperationalError("server closed")), \
            caplog.at_level(logging.ERROR, logger="blink.resets"):
        worker_takes(task, django_capture_on_commit_callbacks)

    request = ResetRequest.objects.get()
    assert request.status == "running" and request.directory_done_at is not None
    assert "its queued task takes over" in caplog.text
    given = directory_calls.call_args.args[2]
    assert given not in caplog.text
    assert Message.objects.filter(kind="reset").count() == 0

    # The worker is long gone when the backstop comes due.
    ResetRequest.objects.filter(pk=request.pk).update(
        started_at=timezone.now() - _stale_after() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert published.run("blink.tasks.reset_run") == 1  # the queued backstop
    send_tasks_run(published)

    assert ResetRequest.objects.get().status == "sent"
    assert directory_calls.call_count == 1  # not reset twice
    password_text = twilio_webhooks.messages_to(USER_PHONE)[-1].body
    assert password_in(password_text) == given


def test_a_worker_not_serving_the_directorys_queue_leaves_the_reset_to_it(
    webhook: Callable[..., Queued], alex: BlinkUser, demo_connection: Connection,
    worker_queues: Callable[[frozenset[str]], None], published: Broker,
    directory_calls: mock.MagicMock, django_capture_on_commit_callbacks: Any,
) -> None:
    Connection.objects.filter(pk=demo_connection.pk).update(queue="dir.globex")
    task = webhook("RESET")
    worker_queues(CENTRAL_QUEUES)  # not dir.globex: that directory is out of its reach

    worker_takes(task, django_capture_on_commit_callbacks)

    request = ResetRequest.objects.get()
    assert request.status == "queued"
    [queued] = published.queued("blink.tasks.reset_run")
    assert (queued.args, queued.queue, queued.eta) == ([request.pk], "dir.globex", None)
    directory_calls.assert_not_called()
