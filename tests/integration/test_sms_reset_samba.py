"""The SMS journeys against a real Active Directory (the Samba DC fixture), carried out by a
real Celery worker on Redis that texts through the Twilio stand-in: a user texts RESET and
gets a password AD makes them change; a user locked out by failed binds is told within one
poll, texts UNLOCK, and their old password works again."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.test import Client as HttpClient
from pytest_django.fixtures import Settings

from blink.lockouts import lockouts_poll, lockouts_poll_all
from blink.models import AuditEvent, LockoutNotice, ResetRequest
from clients.models import Company
from directory.models import Connection
from sms.inbound import neutral_reply
from sms.models import Message
from tests.fakes.twilio import FakeTwilio
from tests.fixtures.samba import SambaDC, SeededUser
from tests.integration.conftest import (
    CeleryWorker,
    active_blink_user,
    tasks_sent_to,
    twilio_worker_running,
)
from tests.sms.conftest import BLINK_NUMBER, text_blink

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PHONE = "+14155550166"
# A Redis database of this module's own: no other test worker takes these tasks.
REDIS_DB = 13
WAIT_SECONDS = 60


@pytest.fixture(scope="module")
def sms_worker(samba_dc: SambaDC, django_db_setup: None, twilio_service: FakeTwilio,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryWorker]:
    """``celery -A blink worker`` on Redis database 13 and the test database, texting
    through the Twilio stand-in. (It asks for the DC first, so a session waiting for the
    DC has no worker of its own taking tasks meanwhile.)"""
    with twilio_worker_running(twilio_service, redis_db=REDIS_DB, name="blink-sms",
                               log_dir=Path(tmp_path_factory.mktemp("sms-worker"))) as worker:
        yield worker


@pytest.fixture
def worker(sms_worker: CeleryWorker, transactional_db: None, settings: Settings,
           twilio_backend: FakeTwilio) -> Iterator[CeleryWorker]:
    """The worker, with this process publishing to it and checking Twilio's signatures."""
    with tasks_sent_to(sms_worker, settings):
        yield sms_worker


@pytest.fixture
def numbered(company: Company) -> Company:
    company.sms_number = BLINK_NUMBER
    company.save()
    return company


def texts_waited(twilio: FakeTwilio, worker: CeleryWorker, count: int,
                 containing: str = "") -> list[str]:
    """The texts the phone received, once ``count`` of them hold ``containing``."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        bodies = [m.body for m in twilio.messages_to(PHONE)]
        if len([b for b in bodies if containing in b]) >= count:
            return bodies
        if worker.process.poll() is not None:
            pytest.fail(f"The worker exited ({worker.process.returncode}):\n{worker.log()}")
        time.sleep(0.2)
    pytest.fail(f"The phone did not get {count} text(s) with {containing!r} in {WAIT_SECONDS} "
                f"s; it got {[m.body for m in twilio.messages_to(PHONE)]}. Worker log:\n"
                f"{worker.log()}")


def test_a_user_texts_reset_and_gets_a_password_ad_makes_them_change(
    worker: CeleryWorker, twilio_backend: FakeTwilio, numbered: Company, samba_dc: SambaDC,
    samba_connection: Connection, samba_user: Callable[..., SeededUser],
    caplog: pytest.LogCaptureFixture,
) -> None:
    person = samba_user()
    active_blink_user(samba_connection, person, PHONE)

    response = text_blink(HttpClient(), twilio_backend, numbered, "RESET", from_=PHONE)

    assert response.status_code == 200
    bodies = texts_waited(twilio_backend, worker, 1, "temporary password")
    assert bodies[0] == neutral_reply(numbered)
    password = re.search(r"is:\n(\S+)\n", bodies[-1])
    assert password is not None, bodies
    ok, message = samba_dc.try_bind(person.upn, password[1])
    assert not ok and "data 773" in message, message  # must change password at next logon
    assert ResetRequest.objects.get().status == "sent"
    stored = (str(list(Message.objects.values())) + str(list(AuditEvent.objects.values()))
              + str(list(ResetRequest.objects.values())))
    assert password[1] not in stored + caplog.text + worker.log()


def test_a_locked_out_user_is_told_within_one_poll_and_unlocks_by_text(
    worker: CeleryWorker, twilio_backend: FakeTwilio, numbered: Company, samba_dc: SambaDC,
    samba_connection: Connection, samba_user: Callable[..., SeededUser],
) -> None:
    person = samba_user()
    blink_user = active_blink_user(samba_connection, person, PHONE)
    samba_dc.lock_out(person.upn)
    ok, message = samba_dc.try_bind(person.upn, person.password)
    assert not ok and "data 775" in message, message  # locked

    assert lockouts_poll_all() == 1  # beat's task: the poll runs in the worker

    [notice] = [b for b in texts_waited(twilio_backend, worker, 1, "is locked")
                if "is locked" in b]
    assert notice == (f"Your account {blink_user.username} is locked. Reply UNLOCK to unlock "
                      "it or RESET for a new password.")
    blink_user.refresh_from_db()
    assert blink_user.locked_since is not None

    text_blink(HttpClient(), twilio_backend, numbered, "UNLOCK", from_=PHONE)

    texts_waited(twilio_backend, worker, 1, "is unlocked")
    assert samba_dc.try_bind(person.upn, person.password)[0]
    lockouts_poll(connection_id=samba_connection.pk)  # the next poll: nothing more to say
    assert LockoutNotice.objects.get().closed_at is not None
    time.sleep(1)
    assert len([m for m in twilio_backend.messages_to(PHONE) if "is locked" in m.body]) == 1
