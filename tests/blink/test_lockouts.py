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
from django.db import IntegrityError, transaction
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from blink.audit import SYSTEM
from blink.lockouts import NOTICES_PER_DAY, lockout_text, lockouts_poll, lockouts_poll_all
from blink.models import AuditEvent, BlinkUser, LockoutNotice
from blink.resets import reset_request_create
from clients.models import Client
from clients.services import client_create
from directory.demo import POLICY, DemoDirectory
from directory.entra import LOCKOUT_UNAVAILABLE, EntraDirectory
from directory.models import Connection, DemoObject, Entry
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


def test_an_account_unlocked_elsewhere_and_locked_again_between_polls_is_told_again(
    demo: Connection, alex: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """An admin unlocks it in AD, and a phone with the old password locks it again before
    the next poll: a new lockout (AD's start says so), so the user is told again."""
    lock(demo, alex)
    poll(demo, django_capture_on_commit_callbacks)
    first = DemoObject.objects.get(object_id=alex.object_id).locked_at
    DemoDirectory(demo.pk).unlock(alex.object_id)
    lock(demo, alex)

    poll(demo, django_capture_on_commit_callbacks)
    poll(demo, django_capture_on_commit_callbacks)

    assert len(notices_sent(sms_outbox)) == 2
    second = DemoObject.objects.get(object_id=alex.object_id).locked_at
    assert second != first
    [open_notice] = LockoutNotice.objects.filter(closed_at=None)
    assert open_notice.locked_since == second
    alex.refresh_from_db()
    assert alex.locked_since == second


def test_lockout_notices_are_capped_per_day(
    demo: Connection, alex: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """Someone locking the account over and over does not text its user all day."""
    for _ in range(NOTICES_PER_DAY + 2):
        lock(demo, alex)
        poll(demo, django_capture_on_commit_callbacks)
        DemoDirectory(demo.pk).unlock(alex.object_id)
        poll(demo, django_capture_on_commit_callbacks)
    lock(demo, alex)
    poll(demo, django_capture_on_commit_callbacks)

    assert len(notices_sent(sms_outbox)) == NOTICES_PER_DAY
    refused = AuditEvent.objects.filter(action="lockout.notice", result="refused")
    assert refused.count() == 3
    assert "in 24 hours; not texted" in refused.first().detail["reason"]  # type: ignore[union-attr]
    # Not texted, but still shown locked.
    alex.refresh_from_db()
    assert alex.locked_since == DemoObject.objects.get(object_id=alex.object_id).locked_at


def test_lockouts_of_users_no_longer_watched_are_forgotten(
    acme_client: Client, demo: Connection, broker: Broker,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    left, archived_off = active_users(acme_client, demo, 2)
    for user in (left, archived_off):
        lock(demo, user)
    poll(demo, django_capture_on_commit_callbacks)
    assert LockoutNotice.objects.filter(closed_at=None).count() == 2

    BlinkUser.objects.filter(pk=left.pk).update(status=BlinkUser.Status.LEFT_DIRECTORY)
    with broker.publishing():
        lockouts_poll_all()
    assert LockoutNotice.objects.get(blink_user=left).closed_at is not None
    assert BlinkUser.objects.get(pk=left.pk).locked_since is None
    assert LockoutNotice.objects.get(blink_user=archived_off).closed_at is None

    Connection.objects.filter(pk=demo.pk).update(monitor_lockouts=False)
    with broker.publishing():
        lockouts_poll_all()
    assert not LockoutNotice.objects.filter(closed_at=None).exists()
    assert not BlinkUser.objects.filter(locked_since__isnull=False).exists()


def test_a_user_has_one_open_lockout_at_a_time(alex: BlinkUser) -> None:
    LockoutNotice.objects.create(blink_user=alex, locked_since=timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        LockoutNotice.objects.create(blink_user=alex,
                                     locked_since=timezone.now() + timedelta(seconds=1))


def test_the_notice_offers_only_what_blink_would_do(acme_client: Client,
                                                   alex: BlinkUser) -> None:
    unlock_or_reset = "Reply UNLOCK to unlock it or RESET for a new password."
    assert lockout_text(alex).endswith(unlock_or_reset)
    # Entra cannot clear a lockout; a new password does.
    assert lockout_text(alex, unlocks=False).endswith("Reply RESET for a new password.")

    Client.objects.filter(pk=acme_client.pk).update(sms_reset_needs_pin=True)
    BlinkUser.objects.filter(pk=alex.pk).update(pin_hash="pbkdf2_sha256$x")
    alex = BlinkUser.objects.select_related("client__company").get(pk=alex.pk)
    assert "Reply UNLOCK and your PIN (e.g. UNLOCK 1234)" in lockout_text(alex)
    assert lockout_text(alex, unlocks=False).endswith(
        "Reply RESET and your PIN (e.g. RESET 1234) for a new password.")

    # Texts Blink would refuse are not offered: no PIN yet, or self-service paused.
    acme_client.company.support_email = "help@acme-it.example"
    acme_client.company.save()
    BlinkUser.objects.filter(pk=alex.pk).update(pin_hash="")
    alex = BlinkUser.objects.select_related("client__company").get(pk=alex.pk)
    assert lockout_text(alex) == (f"Your account {alex.username} is locked. Contact "
                                  "help@acme-it.example to unlock it.")
    BlinkUser.objects.filter(pk=alex.pk).update(
        pin_hash="pbkdf2_sha256$x", paused_until=timezone.now() + timedelta(hours=3))
    alex = BlinkUser.objects.select_related("client__company").get(pk=alex.pk)
    assert "Contact help@acme-it.example" in lockout_text(alex)


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


def test_an_entra_lockout_is_told_once_though_its_refusals_go_on(
    graph_server: FakeGraph, entra: Connection, entra_user: BlinkUser,
    sms_outbox: list[locmem.SentSms], django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    now = timezone.now()
    graph_server.data.add_sign_in(entra_user.object_id, at=now - timedelta(minutes=14))
    graph_server.data.add_sign_in(entra_user.object_id, at=now - timedelta(minutes=1))
    poll(entra, django_capture_on_commit_callbacks)
    # A device keeps trying, and the earliest refusal leaves Entra's window: what Entra
    # reports moves, the lockout does not.
    graph_server.data.add_sign_in(entra_user.object_id, at=timezone.now())
    graph_server.data.sign_ins.pop(0)
    poll(entra, django_capture_on_commit_callbacks)

    assert notices_sent(sms_outbox) == [
        "Your account pat@globex.example is locked. Reply RESET for a new password."]


def test_an_entra_lockout_ends_with_blinks_reset_though_the_log_still_holds_it(
    graph_server: FakeGraph, entra: Connection, entra_user: BlinkUser,
    sms_outbox: list[locmem.SentSms], django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    now = timezone.now()
    graph_server.data.add_sign_in(entra_user.object_id, at=now - timedelta(minutes=3))
    poll(entra, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        reset_request_create(blink_user=entra_user, actor=SYSTEM, channel="sms")
    entra_user.refresh_from_db()
    assert entra_user.last_reset_at is not None and entra_user.locked_since is None

    # The refusal from before the reset is still in Entra's window: the lockout is over.
    poll(entra, django_capture_on_commit_callbacks)
    entra_user.refresh_from_db()
    assert entra_user.locked_since is None
    assert LockoutNotice.objects.get().closed_at is not None
    assert len(notices_sent(sms_outbox)) == 1
    # Locked again after the reset: a new lockout, told. (The log has whole seconds.)
    graph_server.data.add_sign_in(entra_user.object_id, at=timezone.now() + timedelta(seconds=2))
    poll(entra, django_capture_on_commit_callbacks)
    assert len(notices_sent(sms_outbox)) == 2


@pytest.mark.parametrize(("ad_connected", "anchor"), [
    (True, "7c9e6679-7425-40de-944b-e07fc1f90ae7"), (False, "7c9e6679-7425-40de-944b-e07fc1f90ae7"),
    (True, "")])
def test_an_entra_user_synced_from_ad_may_unlock_and_a_reset_in_ad_ends_nothing(
    graph_server: FakeGraph, entra: Connection, entra_user: BlinkUser,
    sms_outbox: list[locmem.SentSms], django_capture_on_commit_callbacks: Callable[..., Any],
    ad_connected: bool, anchor: str,
) -> None:
    """Their password lives in AD: UNLOCK goes there, and a reset there does not end
    Entra's own lockout. Without the client's AD connection, or without knowing which AD
    account the user is, Blink can do neither, and the text says whom to contact."""
    if ad_connected:
        Connection.objects.create(client=entra.client, kind=Connection.Kind.ACTIVE_DIRECTORY)
    Entry.objects.create(connection=entra, kind=Entry.Kind.USER,
                         object_id=entra_user.object_id, name="Pat Lee",
                         on_premises_sync=True, on_premises_id=anchor)
    graph_server.data.add_sign_in(entra_user.object_id, at=timezone.now() - timedelta(minutes=3))
    BlinkUser.objects.filter(pk=entra_user.pk).update(last_reset_at=timezone.now())

    poll(entra, django_capture_on_commit_callbacks)

    assert notices_sent(sms_outbox) == [
        "Your account pat@globex.example is locked. Reply UNLOCK to unlock it or RESET for a "
        "new password." if ad_connected and anchor else
        "Your account pat@globex.example is locked. Contact your IT support to unlock it."]


def test_two_entra_polls_that_see_different_starts_tell_once(
    graph_server: FakeGraph, entra: Connection, entra_user: BlinkUser,
    sms_outbox: list[locmem.SentSms], django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """Overlapping polls (one slowed by Graph throttling) read a log that moved on: the
    second sees a later refusal, and it is the same lockout all the same."""
    now = timezone.now()
    graph_server.data.add_sign_in(entra_user.object_id, at=now - timedelta(minutes=14))
    graph_server.data.add_sign_in(entra_user.object_id, at=now - timedelta(minutes=1))
    poll(entra, django_capture_on_commit_callbacks)
    # The second poll's user row was read before the first one wrote locked_since.
    BlinkUser.objects.filter(pk=entra_user.pk).update(locked_since=None)
    graph_server.data.add_sign_in(entra_user.object_id, at=timezone.now())
    poll(entra, django_capture_on_commit_callbacks)

    assert len(notices_sent(sms_outbox)) == 1
    assert LockoutNotice.objects.count() == 1
    entra_user.refresh_from_db()
    assert entra_user.locked_since == LockoutNotice.objects.get().locked_since


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


# -- While the directory is asked -------------------------------------------------------------


def while_asking(monkeypatch: pytest.MonkeyPatch, directory: type[Any],
                 meanwhile: Callable[[], object]) -> None:
    """Run ``meanwhile`` once, after the next poll got its answer from the directory and
    before it acts on it: what a slow call (Graph throttling, a far domain controller)
    leaves room for."""
    asked = directory.locked_out
    done = False

    def locked_out(self: Any, object_ids: list[str]) -> dict[str, datetime]:
        nonlocal done
        answer = asked(self, object_ids)
        if not done:
            done = True
            meanwhile()
        return answer

    monkeypatch.setattr(directory, "locked_out", locked_out)


def test_a_poll_that_ran_long_does_not_end_a_lockout_a_later_poll_told(
    graph_server: FakeGraph, entra: Connection, entra_user: BlinkUser,
    sms_outbox: list[locmem.SentSms], django_capture_on_commit_callbacks: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Poll A asks Graph before the refusal is logged; poll B, which asked after, tells the
    user; A's older answer must not end B's lockout, or poll C tells the user again."""
    def poll_b() -> None:
        graph_server.data.add_sign_in(entra_user.object_id,
                                      at=timezone.now() - timedelta(minutes=1))
        lockouts_poll(connection_id=entra.pk)

    while_asking(monkeypatch, EntraDirectory, poll_b)
    poll(entra, django_capture_on_commit_callbacks)  # poll A
    [notice] = LockoutNotice.objects.all()
    assert notice.closed_at is None
    entra_user.refresh_from_db()
    assert entra_user.locked_since == notice.locked_since

    graph_server.data.add_sign_in(entra_user.object_id, at=timezone.now())  # still refused
    poll(entra, django_capture_on_commit_callbacks)  # poll C

    assert len(notices_sent(sms_outbox)) == 1
    assert LockoutNotice.objects.filter(closed_at=None).count() == 1


def test_a_poll_holding_an_older_lockout_does_not_text_after_a_newer_one_was_told(
    demo: Connection, alex: BlinkUser, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Poll A hears of a lockout; before it acts, the account is unlocked and locked again
    and poll B tells the user of the new one. A's older news is not texted."""
    lock(demo, alex)
    account = DemoObject.objects.filter(connection=demo, object_id=alex.object_id)

    def relock_and_poll_b() -> None:
        account.update(locked_at=timezone.now() + timedelta(seconds=5))
        lockouts_poll(connection_id=demo.pk)

    while_asking(monkeypatch, DemoDirectory, relock_and_poll_b)
    poll(demo, django_capture_on_commit_callbacks)  # poll A

    assert len(notices_sent(sms_outbox)) == 1
    [notice] = LockoutNotice.objects.filter(closed_at=None)
    assert notice.locked_since == account.get().locked_at
    alex.refresh_from_db()
    assert alex.locked_since == notice.locked_since


@pytest.mark.parametrize("change", ["left", "archived", "monitoring_off"])
def test_a_user_no_longer_watched_when_the_directory_answers_is_not_texted(
    change: str, acme_client: Client, demo: Connection, sms_outbox: list[locmem.SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    alex, sam = active_users(acme_client, demo, 2)
    for user in (alex, sam):
        lock(demo, user)

    def unwatch() -> None:
        if change == "left":
            BlinkUser.objects.filter(pk=alex.pk).update(status=BlinkUser.Status.LEFT_DIRECTORY)
        elif change == "archived":
            Client.objects.filter(pk=acme_client.pk).update(archived_at=timezone.now())
        else:
            Connection.objects.filter(pk=demo.pk).update(monitor_lockouts=False)

    while_asking(monkeypatch, DemoDirectory, unwatch)
    poll(demo, django_capture_on_commit_callbacks)

    texted = [sms["to"] for sms in sms_outbox if "is locked" in sms["body"]]
    assert str(alex.phone) not in texted
    assert not LockoutNotice.objects.filter(blink_user=alex).exists()
    assert BlinkUser.objects.get(pk=alex.pk).locked_since is None
    if change == "left":  # the connection is still watched: its other users are told
        assert texted == [str(sam.phone)]


@pytest.mark.django_db(transaction=True)
def test_a_user_removed_while_the_directory_is_asked_does_not_stop_the_poll(
    acme_client: Client, demo: Connection, sms_outbox: list[locmem.SentSms],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    users = active_users(acme_client, demo, 3)
    for user in users:
        lock(demo, user)
    removed = users[1]
    while_asking(monkeypatch, DemoDirectory,
                 lambda: BlinkUser.objects.filter(pk=removed.pk).delete())

    lockouts_poll(connection_id=demo.pk)

    texted = sorted(sms["to"] for sms in sms_outbox if "is locked" in sms["body"])
    assert texted == sorted(str(user.phone) for user in users if user != removed)
    assert LockoutNotice.objects.filter(closed_at=None).count() == 2


def test_an_entra_lockout_blink_reset_while_graph_was_asked_is_not_texted(
    graph_server: FakeGraph, entra: Connection, entra_user: BlinkUser,
    sms_outbox: list[locmem.SentSms], django_capture_on_commit_callbacks: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The user reset their password by SMS during a slow poll: the refusals Graph reported
    are from before it, and a "locked" text now would be wrong."""
    graph_server.data.add_sign_in(entra_user.object_id, at=timezone.now() - timedelta(minutes=3))
    # What a finished reset writes on the user.
    while_asking(monkeypatch, EntraDirectory, lambda: BlinkUser.objects.filter(
        pk=entra_user.pk).update(last_reset_at=timezone.now(), locked_since=None))

    poll(entra, django_capture_on_commit_callbacks)

    assert notices_sent(sms_outbox) == []
    assert not LockoutNotice.objects.exists()
    assert BlinkUser.objects.get(pk=entra_user.pk).locked_since is None
