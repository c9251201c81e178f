"""Resets when things go wrong (SECURITY.md, "Faults"): the directory unreachable or refusing
mid-reset, Twilio answering 500 then 201, a worker killed mid-task, a real worker on Redis,
and Redis down. Each ends with nothing lost and nothing done twice."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings as django_settings
from django.test import Client as Browser
from django.utils import timezone

from blink.audit import SYSTEM, Actor
from blink.models import AuditEvent, BlinkUser, ResetRequest
from blink.resets import UNQUEUED_REASON, reset_request_create
from blink.tasks import reset_run
from clients.models import Client
from directory.base import DirectoryError
from directory.demo import DemoDirectory
from directory.encryption import secrets_encrypt
from directory.models import Connection
from directory.services import connection_save
from sms.models import Message, OutboxSms
from tests.broker import unreachable_broker
from tests.conftest import demo_blink_user, password_in
from tests.integration.conftest import CeleryWorker
from tests.sms.conftest import BLINK_NUMBER, text_blink

PHONE = "+14155550166"
SUPPORT = "help@acme-it.example"
ADMIN = Actor(label="olivia", ip="127.0.0.1")
CONTACT_SUPPORT = f"Blink could not reset your password just now. Please contact {SUPPORT}."
WORKER_WAIT_SECONDS = 30
# A password the demo directory accepts, as if Blink had made it before a crash.
SEALED = "Sealed-Pass-7493!"




@pytest.fixture
def demo(acme_client: Client, demo_connection: Connection) -> Connection:
    acme_client.company.support_email = SUPPORT
    acme_client.company.save()
    return demo_connection


@pytest.fixture
def ava(acme_client: Client, demo: Connection) -> BlinkUser:
    return demo_blink_user(acme_client, demo, PHONE)


@pytest.fixture
def spy():
    """DemoDirectory.reset_password, still working, with every call recorded."""
    with mock.patch.object(DemoDirectory, "reset_password", autospec=True,
                           side_effect=DemoDirectory.reset_password) as spied:
        yield spied


def passwords_given(spied: mock.MagicMock) -> list[str]:
    return [call.args[2] for call in spied.call_args_list]


def console_reset(owner, blink_user: BlinkUser, captured) -> ResetRequest:
    browser = Browser()
    browser.force_login(owner, backend="django.contrib.auth.backends.ModelBackend")
    with captured(execute=True):
        response = browser.post(f"/users/{blink_user.pk}/reset-password")
    assert response.status_code == 302, response.content
    return ResetRequest.objects.get(pk=int(response["Location"].split("/")[3]))


# The directory unreachable or refusing mid-reset


@pytest.mark.parametrize("permanent", [False, True], ids=["unreachable", "refused"])
def test_a_directory_failing_mid_reset_fails_the_request_and_a_retry_works(
    permanent, owner, ava, demo, sms_outbox, caplog, django_capture_on_commit_callbacks
):
    reason = ("Could not reach the domain controller at dc1.globex.example:636: it did not "
              "answer in time." if not permanent else
              "The directory refused the password: it must be at least 99 characters.")
    attempted: list[str] = []

    def failing(self, object_id, new_password, **kwargs):
        attempted.append(new_password)
        raise DirectoryError(reason, permanent=permanent, code="unreachable")

    with mock.patch.object(DemoDirectory, "reset_password", autospec=True,
                           side_effect=failing):
        failed = console_reset(owner, ava, django_capture_on_commit_callbacks)

    failed.refresh_from_db()
    assert failed.status == ResetRequest.Status.FAILED and failed.reason == reason
    assert failed.sealed_password == "" and failed.directory_done_at is None
    assert [m["body"] for m in sms_outbox] == [CONTACT_SUPPORT]
    [password_not_set] = attempted
    assert AuditEvent.objects.get(action="reset.run").result == "failed"

    # A retry is a new request, and it works.
    retry = console_reset(owner, ava, django_capture_on_commit_callbacks)
    retry.refresh_from_db()
    assert retry.pk != failed.pk and retry.status == ResetRequest.Status.SENT
    password = password_in(sms_outbox[-1]["body"])
    assert DemoDirectory(demo.pk).sign_in(ava.object_id, password) == "must_change"
    assert password != password_not_set
    everything = "\n".join([*(m["body"] for m in sms_outbox), caplog.text,
                            str(list(Message.objects.values()))])
    assert password_not_set not in everything


def test_an_unreachable_active_directory_fails_the_request_with_its_reason(
    acme_client, company, sms_outbox, django_capture_on_commit_callbacks
):
    company.support_email = SUPPORT
    company.save()
    ad = connection_save(
        client=acme_client, actor=SYSTEM, kind="active_directory",
        parameters={"url": "ldaps://127.0.0.1:1", "bind_user": "svc-blink@globex.example",
                    "base_dn": "DC=globex,DC=example"},
        secrets={"bind_password": "not-used"},
    )
    user = BlinkUser.objects.create(client=acme_client, connection=ad,
                                    object_id=str(uuid.uuid4()), username="ava",
                                    phone=PHONE, status="active")
    with django_capture_on_commit_callbacks(execute=True):
        request = reset_request_create(blink_user=user, actor=ADMIN, channel="console")
    request.refresh_from_db()
    assert request.status == ResetRequest.Status.FAILED
    assert request.reason.startswith("Could not reach the domain controller at 127.0.0.1:1: "
                                     "the connection was refused.")
    assert [m["body"] for m in sms_outbox] == [CONTACT_SUPPORT]


def test_an_unexpected_error_ends_the_request_failed_and_logs_no_password(
    ava, sms_outbox, caplog, django_capture_on_commit_callbacks
):
    attempted: list[str] = []

    def hung(self, object_id, new_password, **kwargs):
        attempted.append(new_password)
        raise SoftTimeLimitExceeded(f"stuck while setting {new_password}")

    with mock.patch.object(DemoDirectory, "reset_password", autospec=True, side_effect=hung), \
            django_capture_on_commit_callbacks(execute=True):
        request = reset_request_create(blink_user=ava, actor=ADMIN, channel="console")
    request.refresh_from_db()
    assert request.status == ResetRequest.Status.FAILED  # not "resetting" for ever
    assert "unexpected error" in request.reason
    assert "SoftTimeLimitExceeded" in caplog.text
    assert attempted[0] not in caplog.text
    assert [m["body"] for m in sms_outbox] == [CONTACT_SUPPORT]


# Twilio 500, then 201


def test_twilio_500_then_201_sends_one_sms_with_the_password_the_directory_got(
    owner, ava, demo, twilio_backend, spy, django_capture_on_commit_callbacks
):
    twilio_backend.fail_next(1, status=500)

    request = console_reset(owner, ava, django_capture_on_commit_callbacks)

    assert [attempt.status for attempt in twilio_backend.attempts] == [500, 201]
    [sms] = twilio_backend.messages_to(PHONE)
    [password] = passwords_given(spy)  # one reset, not one per attempt
    assert password_in(sms.body) == password
    assert DemoDirectory(demo.pk).sign_in(ava.object_id, password) == "must_change"
    request.refresh_from_db()
    assert request.status == ResetRequest.Status.SENT
    message = request.message
    assert message is not None
    assert (message.status, message.attempts, message.sealed_body) == ("sent", 2, "")
    assert password not in message.body


# The same request run twice; a worker killed mid-task


def left_running(blink_user: BlinkUser, captured, *, directory_done: bool,
                 stale: bool = True) -> ResetRequest:
    """A request as a worker killed mid-task leaves it: running, its password sealed."""
    with captured(execute=False):  # the first delivery of the task never finished
        request = reset_request_create(blink_user=blink_user, actor=ADMIN, channel="console")
    started = timezone.now() - (
        timedelta(seconds=django_settings.CELERY_TASK_TIME_LIMIT + 60) if stale
        else timedelta(seconds=5))
    ResetRequest.objects.filter(pk=request.pk).update(
        status=ResetRequest.Status.RUNNING, started_at=started,
        sealed_password=secrets_encrypt({"password": SEALED}),
        directory_done_at=timezone.now() if directory_done else None,
    )
    return request


def test_a_request_a_killed_worker_left_reapplies_its_sealed_password(
    ava, demo, sms_outbox, spy, django_capture_on_commit_callbacks
):
    request = left_running(ava, django_capture_on_commit_callbacks, directory_done=False)

    with django_capture_on_commit_callbacks(execute=True):
        reset_run.delay(request.pk)  # the task, delivered again
    with django_capture_on_commit_callbacks(execute=True):
        reset_run.delay(request.pk)  # and once more: nothing happens

    assert passwords_given(spy) == [SEALED]
    [sms] = sms_outbox
    assert password_in(sms["body"]) == SEALED
    assert DemoDirectory(demo.pk).sign_in(ava.object_id, SEALED) == "must_change"
    request.refresh_from_db()
    assert request.status == ResetRequest.Status.SENT and request.sealed_password == ""


def test_a_request_whose_directory_step_was_done_is_not_reset_again(
    ava, sms_outbox, spy, django_capture_on_commit_callbacks
):
    request = left_running(ava, django_capture_on_commit_callbacks, directory_done=True)

    with django_capture_on_commit_callbacks(execute=True):
        reset_run.delay(request.pk)

    assert spy.call_count == 0
    [sms] = sms_outbox
    assert password_in(sms["body"]) == SEALED
    assert ResetRequest.objects.get(pk=request.pk).status == ResetRequest.Status.SENT


def test_a_task_handed_back_while_its_request_looks_running_comes_back_when_stale(
    ava, sms_outbox, spy, broker, django_capture_on_commit_callbacks
):
    # Celery re-delivers at once when a worker child is killed (task_reject_on_worker_lost);
    # the request still looks running, so the task must come back, not be dropped.
    request = left_running(ava, django_capture_on_commit_callbacks, directory_done=False,
                           stale=False)
    with broker.publishing():
        reset_run(request.pk)

    assert spy.call_count == 0 and sms_outbox == []
    [again] = broker.queued()
    assert (again.task, again.args, again.queue) == (
        "blink.tasks.reset_run", [request.pk], "directory")
    limit = django_settings.CELERY_TASK_TIME_LIMIT + 30
    assert limit - 10 < again.countdown() <= limit + 1
    assert ResetRequest.objects.get(pk=request.pk).status == ResetRequest.Status.RUNNING


# A real worker on Redis


def _finished(browser: Browser, request_id: int, worker: CeleryWorker) -> dict[str, object]:
    deadline = time.monotonic() + WORKER_WAIT_SECONDS
    while time.monotonic() < deadline:
        progress = json.loads(browser.get(f"/users/requests/{request_id}/status").content)
        if progress["finished"]:
            return progress
        if worker.process.poll() is not None:
            pytest.fail(f"The Celery worker exited with code {worker.process.returncode}.")
        time.sleep(0.2)
    pytest.fail(f"Request {request_id} did not finish within {WORKER_WAIT_SECONDS} s.")


@pytest.mark.integration
def test_a_console_reset_runs_on_a_real_worker_and_the_sms_reaches_the_outbox(
    celery_worker: CeleryWorker, login, owner, ava, demo
):
    # The worker inherits this environment; without SMS_BACKEND it stores texts as
    # OutboxSms rows in the shared database, where this test reads them.
    assert os.environ.get("SMS_BACKEND", "sms.backends.outbox.SmsBackend") == \
        "sms.backends.outbox.SmsBackend"
    browser = login(owner)
    response = browser.post(f"/users/{ava.pk}/reset-password")
    assert response.status_code == 302
    request_id = int(response["Location"].split("/")[3])

    progress = _finished(browser, request_id, celery_worker)

    assert progress["status"] == "sent", progress
    [sms] = OutboxSms.objects.filter(to=PHONE)
    password = password_in(sms.body)
    assert DemoDirectory(demo.pk).sign_in(ava.object_id, password) == "must_change"
    request = ResetRequest.objects.get(pk=request_id)
    assert request.status == ResetRequest.Status.SENT and request.sealed_password == ""
    assert password not in str(list(ResetRequest.objects.values()))
    assert request.message is not None and password not in request.message.body
    assert password not in celery_worker.log()


# Redis down


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_with_redis_down_the_console_says_so_and_leaves_nothing_queued(
    login, owner, ava, settings, caplog
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    browser = login(owner)

    with unreachable_broker():
        response = browser.post(f"/users/{ava.pk}/reset-password")

    assert response.status_code == 503
    page = response.content.decode()
    assert "its task queue (Redis) is not answering" in page and 'role="alert"' in page
    assert ">Reset Password</button>" in page  # the admin may try again from here
    # Nothing half-done: the request is failed with the reason, not queued for ever.
    [request] = ResetRequest.objects.all()
    assert (request.status, request.reason) == (ResetRequest.Status.FAILED, UNQUEUED_REASON)
    assert not Message.objects.exists()
    assert list(AuditEvent.objects.filter(target_label=ava.username).values_list(
        "action", "result")) == [("reset.run", "failed"), ("reset.request", "ok")]
    progress = json.loads(browser.get(f"/users/requests/{request.pk}/status").content)
    assert (progress["status"], progress["reason"]) == ("failed", UNQUEUED_REASON)
    assert progress["detail"] == f"Nothing was texted to {ava}."
    assert re.search(r"reset request \d+ not queued: the task broker is unavailable",
                     caplog.text)


@pytest.mark.integration
def test_with_redis_down_a_texted_reset_gets_503_and_twilios_retry_resets_once(
    celery_worker: CeleryWorker, twilio_server, settings, ava, demo
):
    """The webhook with a real broker refusing, then back: 503, and the text waits with
    nothing done; the same MessageSid delivered again (twice) makes one reset and one
    password text."""
    settings.TWILIO_AUTH_TOKEN = twilio_server.auth_token
    company = ava.client.company
    company.sms_number = BLINK_NUMBER
    company.save()
    sid = "SM" + uuid.uuid4().hex

    def text(body: str, *, from_: str = PHONE, message_sid: str | None = None):
        return text_blink(Browser(), twilio_server, company, body, from_=from_, sid=message_sid)

    with unreachable_broker():
        down = text("RESET", message_sid=sid)

    assert (down.status_code, down["Retry-After"]) == (503, "30")
    assert list(Message.objects.values_list("direction", "status")) == [("in", "queued")]
    assert not ResetRequest.objects.exists()

    assert text("RESET", message_sid=sid).status_code == 200
    assert text("RESET", message_sid=sid).status_code == 200
    # The worker takes tasks in order: once this reply is out, both RESETs were handled.
    assert text("HELP", from_="+14155550177").status_code == 200
    deadline = time.monotonic() + WORKER_WAIT_SECONDS
    while not OutboxSms.objects.filter(to="+14155550177").exists():
        assert time.monotonic() < deadline, celery_worker.log()
        time.sleep(0.2)

    [request] = ResetRequest.objects.all()
    assert request.channel == ResetRequest.Channel.SMS
    assert Message.objects.filter(direction=Message.Direction.INBOUND, provider_id=sid).count() == 1
    while ResetRequest.objects.get().status != ResetRequest.Status.SENT:
        assert time.monotonic() < deadline, celery_worker.log()
        time.sleep(0.2)
    texts = [sms.body for sms in OutboxSms.objects.filter(to=PHONE).order_by("id")]
    assert len([t for t in texts if "temporary password" in t]) == 1
    assert DemoDirectory(demo.pk).sign_in(ava.object_id, password_in(texts[-1])) == \
        "must_change"
