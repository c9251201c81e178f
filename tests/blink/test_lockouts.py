"""Lockout monitoring on the demo directory and the Graph stand-in: a lockout is texted to
its user once — not again on the next poll, after a restart or from a second worker — and
closes when the directory no longer reports it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from blink.audit import SYSTEM
from blink.lockouts import lockout_text, lockouts_poll, lockouts_poll_all
from blink.models import AuditEvent, BlinkUser, LockoutNotice
from blink.resets import reset_request_create
from clients.models import Client
from clients.services import client_create
from directory.demo import POLICY, DemoDirectory
from directory.entra import LOCKOUT_UNAVAILABLE
from directory.models import Connection, DemoObject
from directory.services import connection_save
from sms.backends import locmem
from sms.models import Message
from tests.broker import Broker
from tests.conftest import demo_blink_user
from tests.fakes.graph import FakeGraph
from tests.fixtures.samba import SeededUser
from tests.integration.conftest import active_blink_user
from tests.servers import unavailable

PHONES = [f"+1415555{n:04d}" for n in range(100, 200)]




@pytest.fixture
def demo(acme_client: Client, demo_connection: Connection) -> Connection:
    return demo_connection


def active_users(client: Client, connection: Connection, count: int) -> list[BlinkUser]:
    taken = BlinkUser.objects.count()
    return [demo_blink_user(client, connection, PHONES[taken + n]) for n in range(count)]


@pytest.fixture
def alex(acme_client: Client, demo: Connection) -> BlinkUser:
    [user] = active_users(acme_client, demo, 1)
    return user


def lock(connection: Connection, user: BlinkUser) -> None:
    """Five wrong Windows sign-ins, as the demo domain counts them."""
    directory = DemoDirectory(connection.pk)
    for _ in range(POLICY.lockout_threshold):
        directory.sign_in(user.object_id, "not the password")
    assert directory.sign_in(user.object_id, "still not") == "locked"


def poll(connection: Connection, run: Callable[..., Any]) -> None:
    """One ``lockouts_poll`` with its SMS handed to the backend, as after the commit."""
    with run(execute=True):
        lockouts_poll(connection_id=connection.pk)


def notices_sent(outbox: list[locmem.SentSms]) -> list[str]:
    return [sms["body"] for sms in outbox if "is locked" in sms["body"]]


# -- One notice per lockout --------------------------------------------------------------------


def test_a_lockout_is_texted_once_however_often_it_is_polled(
    demo: Connection, alex: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    lock(demo, alex)

    for _ in range(3):
        poll(demo, django_capture_on_commit_callbacks)
    cache.clear()  # a restarted poller remembers nothing but the database
    poll(demo, django_capture_on_commit_callbacks)

    assert notices_sent(sms_outbox) == [
        f"Your account {alex.username} is locked. Reply UNLOCK to unlock it or RESET for a "
        "new password."
    ]
    assert [sms["to"] for sms in sms_outbox] == [str(alex.phone)]
    notice = LockoutNotice.objects.get()
    locked_at = DemoObject.objects.get(object_id=alex.object_id).locked_at
    assert notice.locked_since == locked_at and notice.closed_at is None
    assert notice.message == Message.objects.get(kind="lockout")
    alex.refresh_from_db()
    assert alex.locked_since == locked_at
    [event] = AuditEvent.objects.filter(action="lockout.notice")
    assert (event.target_label, event.actor_label) == (alex.username, "Blink lockout monitor")


def test_the_lockout_closes_when_the_account_is_unlocked_and_a_new_one_is_told_again(
    demo: Connection, alex: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    lock(demo, alex)
    poll(demo, django_capture_on_commit_callbacks)

    DemoDirectory(demo.pk).unlock(alex.object_id)
    poll(demo, django_capture_on_commit_callbacks)

    notice = LockoutNotice.objects.get()
    assert notice.closed_at is not None
    alex.refresh_from_db()
    assert alex.locked_since is None
    assert AuditEvent.objects.filter(action="lockout.ended", target_label=alex.username).exists()

    lock(demo, alex)
    poll(demo, django_capture_on_commit_callbacks)
    poll(demo, django_capture_on_commit_callbacks)

    assert len(notices_sent(sms_outbox)) == 2
    assert LockoutNotice.objects.filter(closed_at=None).count() == 1


def test_after_an_unlock_by_sms_a_second_lockout_is_told_even_before_a_poll_saw_the_first_end(
    demo: Connection, alex: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    lock(demo, alex)
    poll(demo, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        reset_request_create(blink_user=alex, actor=SYSTEM, channel="sms", kind="unlock")
    lock(demo, alex)  # locked again before the next poll

    poll(demo, django_capture_on_commit_callbacks)

    assert len(notices_sent(sms_outbox)) == 2
    [open_notice] = LockoutNotice.objects.filter(closed_at=None)
    assert open_notice.locked_since == DemoObject.objects.get(object_id=alex.object_id).locked_at


def test_pin_clients_are_told_to_reply_with_their_pin(acme_client: Client,
                                                       alex: BlinkUser) -> None:
    acme_client.sms_reset_needs_pin = True
    assert "UNLOCK and your PIN" in lockout_text(alex)


@pytest.mark.django_db(transaction=True)
def test_two_workers_polling_at_once_send_one_notice(
    acme_client: Client, demo: Connection, sms_outbox: list[locmem.SentSms]
) -> None:
    if db_connection.vendor != "postgresql":
        unavailable("Concurrent workers need PostgreSQL (SQLite serialises writers).")
    users = active_users(acme_client, demo, 3)
    for user in users:
        lock(demo, user)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait(timeout=10)
            lockouts_poll(connection_id=demo.pk)
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)
        finally:
            db_connection.close()

    for _ in range(3):
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    assert errors == []
    assert LockoutNotice.objects.count() == 3
    assert sorted(sms["to"] for sms in sms_outbox if "is locked" in sms["body"]) == sorted(
        str(user.phone) for user in users)


def test_a_poll_makes_the_same_number_of_queries_for_3_or_30_users(
    acme_client: Client, demo: Connection,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    few = active_users(acme_client, demo, 3)
    lock(demo, few[0])
    poll(demo, django_capture_on_commit_callbacks)  # told; now the steady state

    def queries() -> int:
        with CaptureQueriesContext(db_connection) as captured:
            lockouts_poll(connection_id=demo.pk)
        return len(captured.captured_queries)

    steady = queries()
    more = active_users(acme_client, demo, 27)
    lock(demo, more[0])
    poll(demo, django_capture_on_commit_callbacks)

    assert queries() == steady
    assert steady <= 5


# -- Which connections are polled -------------------------------------------------------------


def test_beat_polls_every_configured_interval() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["lockouts-poll-all"]
    assert entry["task"] == "blink.tasks.lockouts_poll_all"
    assert entry["schedule"] == float(settings.BLINK_LOCKOUT_POLL_SECONDS) == 60.0


def test_one_poll_is_queued_per_monitored_connection_on_its_queue(
    company: Any, acme_client: Client, demo: Connection, broker: Broker
) -> None:
    active_users(acme_client, demo, 2)
    Connection.objects.filter(pk=demo.pk).update(queue="dir.globex")

    def client_with(name: str, **fields: Any) -> Connection:
        other = client_create(company=company, actor=SYSTEM, name=name)
        connection = Connection.objects.create(client=other, kind="demo", **fields)
        BlinkUser.objects.create(client=other, connection=connection, object_id="x",
                                 username=name.lower(), status="active")
        return connection

    client_with("Off", monitor_lockouts=False)
    client_with("Unlicensed", lockout_monitoring_unavailable=LOCKOUT_UNAVAILABLE)
    archived = client_with("Gone")
    Client.objects.filter(pk=archived.client_id).update(archived_at=timezone.now())
    nobody = client_create(company=company, actor=SYSTEM, name="Nobody")
    Connection.objects.create(client=nobody, kind="demo")

    with broker.publishing():
        assert lockouts_poll_all() == 1

    [poll_task] = broker.queued()
    assert (poll_task.task, poll_task.args, poll_task.queue) == (
        "blink.tasks.lockouts_poll", [demo.pk], "dir.globex")
    # A poll not taken in time is dropped (the next one replaces it).
    message = json.loads(broker.redis.lrange("dir.globex", 0, 0)[0])
    expires = datetime.fromisoformat(message["headers"]["expires"])
    poll_seconds = settings.BLINK_LOCKOUT_POLL_SECONDS
    assert poll_seconds - 5 < (expires - timezone.now()).total_seconds() <= poll_seconds


def test_archived_or_switched_off_connections_are_not_polled_even_if_a_task_was_queued(
    acme_client: Client, demo: Connection, alex: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    lock(demo, alex)
    Connection.objects.filter(pk=demo.pk).update(monitor_lockouts=False)
    poll(demo, django_capture_on_commit_callbacks)
    Connection.objects.filter(pk=demo.pk).update(monitor_lockouts=True)
    Client.objects.filter(pk=acme_client.pk).update(archived_at=timezone.now())
    poll(demo, django_capture_on_commit_callbacks)

    assert not LockoutNotice.objects.exists()
    assert sms_outbox == []


# -- When the directory cannot answer ---------------------------------------------------------


@pytest.fixture
def entra(graph_server: FakeGraph, acme_client: Client) -> Connection:
    return connection_save(
        client=acme_client, actor=SYSTEM, kind="entra",
        parameters={
            "tenant_id": graph_server.tenant_id, "client_id": graph_server.client_id,
            "authority_host": graph_server.authority_host, "graph_url": graph_server.graph_url,
            "ca_bundle": graph_server.ca_bundle,
        },
        secrets={"client_secret": graph_server.client_secret},
    )


@pytest.fixture
def entra_user(graph_server: FakeGraph, acme_client: Client, entra: Connection) -> BlinkUser:
    user = graph_server.data.add_user("pat@globex.example", display_name="Pat Lee")
    return BlinkUser.objects.create(client=acme_client, connection=entra, object_id=user["id"],
                                    username="pat@globex.example", phone=PHONES[50],
                                    status="active")


def test_an_entra_lockout_is_told_once_though_its_first_refusal_moves(
    graph_server: FakeGraph, entra: Connection, entra_user: BlinkUser,
    sms_outbox: list[locmem.SentSms], django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    now = timezone.now()
    graph_server.data.add_sign_in(entra_user.object_id, at=now - timedelta(minutes=14))
    graph_server.data.add_sign_in(entra_user.object_id, at=now - timedelta(minutes=1))
    poll(entra, django_capture_on_commit_callbacks)
    # The earliest refusal leaves Entra's window: the reported start moves, the lockout not.
    graph_server.data.sign_ins.pop(0)
    poll(entra, django_capture_on_commit_callbacks)

    assert notices_sent(sms_outbox) == [lockout_text(entra_user)]


def test_an_entra_tenant_without_p1_is_marked_unavailable_once_and_no_longer_polled(
    graph_server: FakeGraph, entra: Connection, entra_user: BlinkUser, broker: Broker,
    caplog: pytest.LogCaptureFixture, django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    graph_server.knobs.premium = False

    poll(entra, django_capture_on_commit_callbacks)
    asked = len(graph_server.requests)
    poll(entra, django_capture_on_commit_callbacks)
    with broker.publishing():
        lockouts_poll_all()

    entra.refresh_from_db()
    assert entra.lockout_monitoring_unavailable == LOCKOUT_UNAVAILABLE
    assert len(graph_server.requests) == asked
    assert broker.queued() == []
    [event] = AuditEvent.objects.filter(action="lockouts.unavailable")
    assert event.detail["reason"] == LOCKOUT_UNAVAILABLE
    assert len([r for r in caplog.records if r.levelname == "WARNING"
                and "unavailable" in r.getMessage()]) == 1


def test_other_directory_errors_are_audited_once_per_failure_streak(
    samba_connection: Connection, samba_user: Callable[..., SeededUser],
    caplog: pytest.LogCaptureFixture, django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """A real domain controller, out of reach and back: a failure is audited when a streak
    starts, the recovery once, and nothing in between."""
    active_blink_user(samba_connection, samba_user(), "+14155550131")
    reachable = dict(samba_connection.parameters)

    def reach(ok: bool) -> None:
        Connection.objects.filter(pk=samba_connection.pk).update(
            parameters=reachable if ok else {**reachable, "url": "ldaps://127.0.0.1:1"})

    for ok in (False, False, False, True, False, False):
        reach(ok)
        poll(samba_connection, django_capture_on_commit_callbacks)

    events = AuditEvent.objects.filter(action="lockouts.poll").order_by("id")
    assert [(e.result, e.detail.get("recovered", False)) for e in events] == [
        ("failed", False), ("ok", True), ("failed", False)]
    assert "Could not reach the domain controller at 127.0.0.1:1" in events[0].detail["reason"]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"
                and r.name == "blink.lockouts"]
    assert len(warnings) == 2
    samba_connection.refresh_from_db()
    assert samba_connection.lockout_monitoring_unavailable == ""
