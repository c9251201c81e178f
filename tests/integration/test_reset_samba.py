"""Reset Password and Unlock from the console against a real Active Directory (the Samba DC
fixture), carried out by a real Celery worker on Redis that texts through the Twilio
stand-in: the text carries a password AD makes the user change (data 773), and an unlock
lets the old password in again."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client as Browser
from pytest_django.fixtures import Settings

from blink.models import AuditEvent, BlinkUser, ResetRequest
from blink.tasks import lockouts_poll
from directory.models import Connection
from sms.models import Message
from tests.conftest import password_in
from tests.fakes.twilio import FakeTwilio
from tests.fixtures.samba import SambaDC
from tests.integration.conftest import (
    CeleryWorker,
    active_blink_user,
    tasks_sent_to,
    twilio_worker_running,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PHONE = "+14155550188"
SUPPORT = "help@acme-it.example"
# A Redis database of this module's own, so the session's outbox worker (db 15) never takes
# these tasks.
REDIS_DB = 14
WAIT_SECONDS = 60


# A worker that texts through the Twilio stand-in


@pytest.fixture(scope="module")
def module_worker(
    django_db_setup: None, twilio_service: FakeTwilio, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryWorker]:
    with twilio_worker_running(twilio_service, redis_db=REDIS_DB,
                               log_dir=tmp_path_factory.mktemp("reset-worker")) as worker:
        yield worker


@pytest.fixture
def worker(module_worker: CeleryWorker, transactional_db: None, settings: Settings,
           twilio_server: FakeTwilio) -> Iterator[CeleryWorker]:
    """The worker, with this process (and its live server) publishing to it."""
    with tasks_sent_to(module_worker, settings):
        yield module_worker


# The Samba-backed client and its Blink user


@pytest.fixture
def samba_connection(samba_connection: Connection) -> Connection:
    """The Samba-backed connection, for a company with a support address."""
    company = samba_connection.client.company
    company.support_email = SUPPORT
    company.save()
    return samba_connection


def finished(browser: Browser, request_id: int, worker: CeleryWorker) -> dict[str, object]:
    """The status JSON once the request has finished, as the status page polls it."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        progress = json.loads(browser.get(f"/users/requests/{request_id}/status").content)
        if progress["finished"]:
            return dict(progress)
        if worker.process.poll() is not None:
            pytest.fail(f"The worker exited ({worker.process.returncode}):\n{worker.log()}")
        time.sleep(0.25)
    pytest.fail(f"Request {request_id} did not finish in {WAIT_SECONDS} s. Worker log:\n"
                f"{worker.log()}")


def post(browser: Browser, blink_user: BlinkUser, action: str) -> int:
    response = browser.post(f"/users/{blink_user.pk}/{action}")
    assert response.status_code == 302, response.content
    return int(response["Location"].split("/")[3])


def test_reset_password_texts_a_password_ad_makes_the_user_change(
    worker: CeleryWorker, login: Callable[..., Browser], owner: AbstractBaseUser,
    samba_dc: SambaDC, samba_connection: Connection, samba_user, twilio_server: FakeTwilio,
) -> None:
    person = samba_user()
    blink_user = active_blink_user(samba_connection, person, PHONE)
    browser = login(owner)

    request_id = post(browser, blink_user, "reset-password")
    progress = finished(browser, request_id, worker)

    assert progress["status"] == "sent", progress
    [sms] = twilio_server.messages_to(PHONE)
    password = password_in(sms.body)
    ok, message = samba_dc.try_bind(person.upn, password)
    assert not ok and "data 773" in message, message  # must change password
    ok, message = samba_dc.try_bind(person.upn, person.password)
    assert not ok and "data 52e" in message, message  # the old password is gone
    page = browser.get(f"/users/requests/{request_id}/").content.decode()
    assert "Sent" in page
    assert password not in page + json.dumps(progress) + worker.log()
    assert password not in str(list(ResetRequest.objects.values())) + str(
        list(Message.objects.values())) + str(list(AuditEvent.objects.values()))


def test_unlock_after_failed_binds_lets_the_old_password_in(
    worker: CeleryWorker, login: Callable[..., Browser], admin: AbstractBaseUser,
    samba_dc: SambaDC, samba_connection: Connection, samba_user, twilio_server: FakeTwilio,
) -> None:
    person = samba_user()
    blink_user = active_blink_user(samba_connection, person, PHONE)
    samba_dc.lock_out(person.upn)
    ok, message = samba_dc.try_bind(person.upn, person.password)
    assert not ok and "data 775" in message, message  # locked

    browser = login(admin)
    progress = finished(browser, post(browser, blink_user, "unlock"), worker)

    assert progress["status"] == "sent", progress
    assert samba_dc.try_bind(person.upn, person.password)[0]
    [sms] = twilio_server.messages_to(PHONE)
    assert "is unlocked. Your password has not changed." in sms.body


def test_a_domain_controller_out_of_reach_fails_the_request_and_a_retry_works(
    worker: CeleryWorker, login: Callable[..., Browser], owner: AbstractBaseUser,
    samba_dc: SambaDC, samba_connection: Connection, samba_user, twilio_server: FakeTwilio,
) -> None:
    person = samba_user()
    blink_user = active_blink_user(samba_connection, person, PHONE)
    reachable = dict(samba_connection.parameters)
    Connection.objects.filter(pk=samba_connection.pk).update(
        parameters={**reachable, "url": "ldaps://127.0.0.1:1"})
    browser = login(owner)

    progress = finished(browser, post(browser, blink_user, "reset-password"), worker)

    assert progress["status"] == "failed"
    assert str(progress["reason"]).startswith(
        "Could not reach the domain controller at 127.0.0.1:1: the connection was refused.")
    assert [m.body for m in twilio_server.messages_to(PHONE)] == [
        f"Blink could not reset your password just now. Please contact {SUPPORT}."]
    assert samba_dc.try_bind(person.upn, person.password)[0]  # nothing changed

    Connection.objects.filter(pk=samba_connection.pk).update(parameters=reachable)
    progress = finished(browser, post(browser, blink_user, "reset-password"), worker)

    assert progress["status"] == "sent", progress
    password = password_in(twilio_server.messages_to(PHONE)[-1].body)
    ok, message = samba_dc.try_bind(person.upn, password)
    assert not ok and "data 773" in message, message


def test_twilio_failing_once_the_password_arrives_on_the_sms_queues_retry(
    worker: CeleryWorker, login: Callable[..., Browser], owner: AbstractBaseUser,
    samba_dc: SambaDC, samba_connection: Connection, samba_user, twilio_server: FakeTwilio,
) -> None:
    # The worker serves the sms queue, so it tries the text itself; Twilio's 500 sends it
    # to the queue's retry, 10-20 s later, with the same password.
    person = samba_user()
    blink_user = active_blink_user(samba_connection, person, PHONE)
    twilio_server.fail_next(1, status=500)
    browser = login(owner)

    progress = finished(browser, post(browser, blink_user, "reset-password"), worker)
    assert progress["status"] == "sent", progress
    deadline = time.monotonic() + WAIT_SECONDS
    while (not Message.objects.filter(kind="reset", status="sent").exists()
           and time.monotonic() < deadline):
        time.sleep(0.5)

    assert [attempt.status for attempt in twilio_server.attempts] == [500, 201]
    [sms] = twilio_server.messages_to(PHONE)
    ok, message = samba_dc.try_bind(person.upn, password_in(sms.body))
    assert not ok and "data 773" in message, message
    stored = Message.objects.get(kind="reset")
    assert (stored.status, stored.attempts, stored.sealed_body) == ("sent", 2, "")


def test_lockout_polls_keep_the_connection_the_next_reset_uses(
    worker: CeleryWorker, login: Callable[..., Browser], owner: AbstractBaseUser,
    samba_dc: SambaDC, samba_connection: Connection, samba_user, twilio_server: FakeTwilio,
) -> None:
    """Polls every minute must not cost every reset a new TLS connection and bind."""
    person = samba_user()
    blink_user = active_blink_user(samba_connection, person, PHONE)
    samba_dc.lock_out(person.upn)
    log_before = len(worker.log())

    for _ in range(2):
        lockouts_poll.apply_async((samba_connection.pk,), queue=samba_connection.queue)
    browser = login(owner)
    # The same queue, so the worker takes the reset after both polls.
    progress = finished(browser, post(browser, blink_user, "reset-password"), worker)

    assert progress["status"] == "sent", progress
    assert BlinkUser.objects.get(pk=blink_user.pk).locked_since is None  # unlocked too
    assert any("is locked" in m.body for m in twilio_server.messages_to(PHONE))
    # The worker logs each connection it opens (so a renamed line cannot pass this by
    # accident); at most one here: the first use of this connection, if this test is it.
    assert "directory connection opened to" in worker.log(), worker.log()
    opened = worker.log()[log_before:].count("directory connection opened to")
    assert opened <= 1, worker.log()[log_before:]
