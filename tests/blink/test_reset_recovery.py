"""Resets that a worker could not finish in one go: the password set in the directory is the
one the user gets, and no second password is made behind their back."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from blink import resets
from blink.audit import Actor
from blink.models import ResetRequest
from blink.resets import reset_request_create, resets_requeue
from clients.models import Client
from directory.demo import POLICY, DemoDirectory
from directory.encryption import secrets_encrypt
from directory.models import Connection
from directory.passwords import temporary_password
from sms.backends import locmem
from tests.broker import Broker
from tests.conftest import demo_blink_user, password_in

PHONE = "+14155550166"
ADMIN = Actor(label="olivia", ip="127.0.0.1")


def _queued(client: Client, connection: Connection, run: Callable[..., Any]) -> ResetRequest:
    """A console reset recorded and committed, its task not run yet."""
    user = demo_blink_user(client, connection, PHONE)
    with run():  # the task it queues after the commit is left out
        return reset_request_create(blink_user=user, actor=ADMIN, channel="console")


def test_an_hour_old_request_whose_password_was_set_is_texted_not_failed(
    acme_client: Client, demo_connection: Connection, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """The on-premises worker set the password and died before texting it; beat's sweep
    comes an hour later. The directory holds that password now: the user must get it."""
    request = _queued(acme_client, demo_connection, django_capture_on_commit_callbacks)
    user = request.blink_user
    password = temporary_password(POLICY, length=acme_client.temp_password_length)
    DemoDirectory(demo_connection.pk).reset_password(user.object_id, password)
    long_ago = timezone.now() - timedelta(hours=2)
    ResetRequest.objects.filter(pk=request.pk).update(
        status=ResetRequest.Status.RUNNING, created_at=long_ago, started_at=long_ago,
        directory_done_at=long_ago, sealed_password=secrets_encrypt({"password": password}))

    with django_capture_on_commit_callbacks(execute=True):
        resets_requeue()

    request.refresh_from_db()
    assert request.status == ResetRequest.Status.SENT
    [sms] = sms_outbox
    assert password_in(sms["body"]) == password


@pytest.mark.django_db(transaction=True)
def test_a_worker_claiming_a_stale_request_as_it_is_replaced_does_not_make_two_passwords(
    acme_client: Client, demo_connection: Connection, monkeypatch: pytest.MonkeyPatch,
    broker: Broker,
) -> None:
    """A second reset replaces a request that looked dead; at that very moment its late
    worker claims it. One of them goes ahead, never both."""
    user = demo_blink_user(acme_client, demo_connection, PHONE)
    first = ResetRequest.objects.create(blink_user=user, kind="reset", channel="console",
                                        requested_label="olivia")
    ResetRequest.objects.filter(pk=first.pk).update(
        queued_at=timezone.now() - timedelta(minutes=10))
    claimed: list[bool] = []
    workers: list[threading.Thread] = []
    under_way = resets._under_way

    def claim() -> None:
        try:
            claimed.append(resets._claim(first.pk))
        finally:
            db_connection.close()

    def late_worker_claims(request: ResetRequest, now: Any) -> bool:
        workers.append(threading.Thread(target=claim))
        workers[-1].start()
        workers[-1].join(timeout=1)  # with the row locked, it waits for this transaction
        return under_way(request, now)

    monkeypatch.setattr(resets, "_under_way", late_worker_claims)
    with broker.publishing():
        second = reset_request_create(blink_user=user, actor=ADMIN, channel="console")
    for worker in workers:
        worker.join(timeout=5)
    assert not any(worker.is_alive() for worker in workers)

    first.refresh_from_db()
    assert claimed == [False] and first.status == ResetRequest.Status.FAILED
    # Only the new request goes to a worker.
    assert [t.args for t in broker.queued("blink.tasks.reset_run")] == [[second.pk]]
