"""Resets and unlocks at the service level, on the demo directory."""

from __future__ import annotations

import pytest
from django.utils import timezone

from blink.audit import Actor
from blink.models import AuditEvent, BlinkUser, ResetRequest
from blink.resets import STOPPED_REASON, ResetRefused, reset_request_create
from directory.demo import POLICY, DemoDirectory
from directory.models import Connection, DemoObject, Entry
from sms.models import Message, OptOut
from tests.conftest import CENTRAL_QUEUES, demo_blink_user, password_in

PHONE = "+14155550177"
ADMIN = Actor(label="olivia", ip="127.0.0.1")




@pytest.fixture
def demo(acme_client, demo_connection):
    return demo_connection


def run(request_fn, captured):
    with captured(execute=True):
        return request_fn()


def test_reset_sets_a_must_change_password_sent_only_by_sms(
    acme_client, demo, sms_outbox, django_capture_on_commit_callbacks
):
    user = demo_blink_user(acme_client, demo, PHONE)
    request = run(lambda: reset_request_create(blink_user=user, actor=ADMIN, channel="console"),
                  django_capture_on_commit_callbacks)
    request.refresh_from_db()
    assert request.status == ResetRequest.Status.SENT and request.finished_at
    password = password_in(sms_outbox[-1]["body"])
    assert len(password) >= max(POLICY.min_length, acme_client.temp_password_length)
    assert DemoDirectory(demo.pk).sign_in(user.object_id, password) == "must_change"
    assert request.sealed_password == ""
    assert password not in Message.objects.get(kind="reset").body
    assert password not in str(list(AuditEvent.objects.values_list("detail", flat=True)))
    user.refresh_from_db()
    assert user.last_reset_at is not None
    assert list(AuditEvent.objects.filter(target_label=user.username)
                .values_list("action", "result")) == [("reset.run", "ok"),
                                                      ("reset.request", "ok")]


def test_a_phone_that_texts_stop_before_the_run_gets_no_new_password(
    acme_client, demo, sms_outbox, django_capture_on_commit_callbacks
):
    """The request waited (a directory worker behind, say) and meanwhile the phone texted
    STOP: a password nobody could be told would only lock the user out."""
    user = demo_blink_user(acme_client, demo, PHONE)
    account = DemoObject.objects.filter(connection=demo, object_id=user.object_id)
    password_before = account.get().password_hash
    with django_capture_on_commit_callbacks() as queued:
        request = reset_request_create(blink_user=user, actor=ADMIN, channel="console")
    OptOut.objects.create(phone=PHONE)

    for callback in queued:
        callback()

    request.refresh_from_db()
    assert (request.status, request.reason) == (ResetRequest.Status.FAILED, STOPPED_REASON)
    assert sms_outbox == []
    assert not Message.objects.filter(kind="reset").exists()
    user.refresh_from_db()
    assert user.last_reset_at is None
    assert account.get().password_hash == password_before  # the directory was not touched


def test_support_is_emailed_after_each_reset_and_unlock_when_the_company_asks(
    acme_client, company, demo, sms_outbox, mailoutbox, django_capture_on_commit_callbacks
):
    user = demo_blink_user(acme_client, demo, PHONE)
    run(lambda: reset_request_create(blink_user=user, actor=ADMIN, channel="console"),
        django_capture_on_commit_callbacks)
    assert mailoutbox == []  # off by default

    company.support_email = "help@acme-it.example"
    company.notify_support_on_reset = True
    company.save()
    user.refresh_from_db()
    for kind in ("reset", "unlock"):
        run(lambda kind=kind: reset_request_create(blink_user=user, actor=ADMIN,
                                                   channel="console", kind=kind),
            django_capture_on_commit_callbacks)

    assert [(m.to, m.subject) for m in mailoutbox] == [
        (["help@acme-it.example"], f"Blink: {user}'s password was reset"),
        (["help@acme-it.example"], f"Blink: {user}'s account was unlocked"),
    ]
    assert f"({user.username}) of Globex" in mailoutbox[0].body
    assert "asked by olivia (Console)" in mailoutbox[0].body
    password = password_in([m["body"] for m in sms_outbox if "temporary" in m["body"]][-1])
    assert not any(password in m.body or password in m.subject for m in mailoutbox)


@pytest.mark.parametrize("unlock_on_reset", [True, False])
def test_a_reset_unlocks_the_account_only_when_the_client_says_so(
    acme_client, demo, sms_outbox, django_capture_on_commit_callbacks, unlock_on_reset
):
    acme_client.unlock_on_reset = unlock_on_reset
    acme_client.save()
    user = demo_blink_user(acme_client, demo, PHONE)
    directory = DemoDirectory(demo.pk)
    for _ in range(POLICY.lockout_threshold):
        directory.sign_in(user.object_id, "wrong")
    BlinkUser.objects.filter(pk=user.pk).update(locked_since=timezone.now())
    user.refresh_from_db()

    run(lambda: reset_request_create(blink_user=user, actor=ADMIN, channel="console"),
        django_capture_on_commit_callbacks)

    password = password_in(sms_outbox[-1]["body"])
    assert directory.sign_in(user.object_id, password) == (
        "must_change" if unlock_on_reset else "locked")
    user.refresh_from_db()
    assert (user.locked_since is None) is unlock_on_reset


def test_the_user_gets_an_email_confirming_each_reset_and_unlock_without_the_password(
    acme_client, company, demo, sms_outbox, mailoutbox, django_capture_on_commit_callbacks
):
    company.support_email = "help@acme-it.example"
    company.save()
    user = demo_blink_user(acme_client, demo, PHONE)
    BlinkUser.objects.filter(pk=user.pk).update(email="ava@globex.example")
    user.refresh_from_db()

    run(lambda: reset_request_create(blink_user=user, actor=ADMIN, channel="console"),
        django_capture_on_commit_callbacks)
    run(lambda: reset_request_create(blink_user=user, actor=Actor(label="by sms"),
                                     channel="sms", kind="unlock"),
        django_capture_on_commit_callbacks)

    assert [(m.to, m.reply_to, m.subject) for m in mailoutbox] == [
        (["ava@globex.example"], ["help@acme-it.example"],
         "Acme IT Blink: your password was reset"),
        (["ava@globex.example"], ["help@acme-it.example"],
         "Acme IT Blink: your account was unlocked"),
    ]
    reset, unlock = (m.body for m in mailoutbox)
    assert f"The password of your account {user.username} was reset at " in reset
    assert "by your IT support, in the Blink console" in reset
    assert "olivia" not in reset  # an admin's name is not the user's business
    assert "by a text from your phone •••• 0177. Your password has not changed." in unlock
    assert "If you did not ask for this, contact help@acme-it.example now." in unlock
    password = password_in([m["body"] for m in sms_outbox if "temporary" in m["body"]][-1])
    assert password not in reset + unlock


def test_a_failed_reset_emails_no_one(
    acme_client, company, demo, sms_outbox, mailoutbox, django_capture_on_commit_callbacks
):
    company.support_email = "help@acme-it.example"
    company.notify_support_on_reset = True
    company.save()
    user = demo_blink_user(acme_client, demo, PHONE, protected=True)
    BlinkUser.objects.filter(pk=user.pk).update(email="ava@globex.example")
    user.refresh_from_db()
    request = run(lambda: reset_request_create(blink_user=user, actor=ADMIN, channel="console"),
                  django_capture_on_commit_callbacks)
    assert ResetRequest.objects.get(pk=request.pk).status == "failed"
    assert mailoutbox == []


def test_only_active_users_can_be_reset(acme_client, demo):
    user = demo_blink_user(acme_client, demo, PHONE)
    BlinkUser.objects.filter(pk=user.pk).update(status="invited")
    user.refresh_from_db()
    with pytest.raises(ResetRefused, match="finished activation"):
        reset_request_create(blink_user=user, actor=ADMIN, channel="console")
    assert not ResetRequest.objects.exists()


def test_a_refused_reset_tells_the_user_to_contact_support_without_a_password(
    acme_client, company, demo, sms_outbox, django_capture_on_commit_callbacks
):
    company.support_email = "help@acme-it.example"
    company.save()
    user = demo_blink_user(acme_client, demo, PHONE, protected=True)
    request = run(lambda: reset_request_create(blink_user=user, actor=ADMIN, channel="sms"),
                  django_capture_on_commit_callbacks)
    request.refresh_from_db()
    assert request.status == ResetRequest.Status.FAILED
    assert "privileged" in request.reason
    assert [m["body"] for m in sms_outbox] == [
        "Blink could not reset your password just now. Please contact help@acme-it.example."
    ]


def test_unlock_keeps_the_password(acme_client, demo, sms_outbox,
                                   django_capture_on_commit_callbacks):
    user = demo_blink_user(acme_client, demo, PHONE)
    directory = DemoDirectory(demo.pk)
    directory.reset_password(user.object_id, "Known-Pass-4466", must_change=False)
    for _ in range(POLICY.lockout_threshold):
        directory.sign_in(user.object_id, "wrong")
    assert directory.sign_in(user.object_id, "Known-Pass-4466") == "locked"
    request = run(lambda: reset_request_create(blink_user=user, actor=ADMIN, channel="console",
                                               kind="unlock"),
                  django_capture_on_commit_callbacks)
    request.refresh_from_db()
    assert request.status == "sent"
    assert directory.sign_in(user.object_id, "Known-Pass-4466") == "ok"
    assert "is unlocked" in sms_outbox[-1]["body"]


def test_a_request_that_runs_again_reapplies_the_same_password(
    acme_client, demo, sms_outbox, django_capture_on_commit_callbacks
):
    from blink.resets import reset_run

    user = demo_blink_user(acme_client, demo, PHONE)
    request = run(lambda: reset_request_create(blink_user=user, actor=ADMIN, channel="console"),
                  django_capture_on_commit_callbacks)
    sent = len(sms_outbox)
    with django_capture_on_commit_callbacks(execute=True):
        reset_run(request_id=request.pk)  # a duplicate delivery of the task
    assert len(sms_outbox) == sent
    assert ResetRequest.objects.get().status == "sent"



def test_a_request_is_queued_where_the_users_password_lives(
    acme_client, demo, broker, django_capture_on_commit_callbacks
):
    Connection.objects.filter(pk=demo.pk).update(queue="dir.globex")
    ava = BlinkUser.objects.get(pk=demo_blink_user(acme_client, demo, PHONE).pk)
    # Sam is an Entra user synced from on-premises AD: the password is reset there.
    Connection.objects.create(client=acme_client, kind=Connection.Kind.ACTIVE_DIRECTORY,
                              queue="dir.onprem")
    entra = Connection.objects.create(client=acme_client, kind=Connection.Kind.ENTRA)
    Entry.objects.create(connection=entra, kind="user", object_id="synced-1", name="Sam Synced",
                         username="sam@globex.example", on_premises_sync=True,
                         on_premises_id="7c9e6679-7425-40de-944b-e07fc1f90ae7")
    sam = BlinkUser.objects.create(client=acme_client, connection=entra, object_id="synced-1",
                                   username="sam@globex.example", phone="+14155550178",
                                   status="active")

    with broker.publishing(), django_capture_on_commit_callbacks(execute=True):
        ava_request = reset_request_create(blink_user=ava, actor=ADMIN, channel="console")
        sam_request = reset_request_create(blink_user=sam, actor=ADMIN, channel="console")

    assert [(t.task, t.args, t.queue) for t in broker.queued()] == [
        ("blink.tasks.reset_run", [ava_request.pk], "dir.globex"),
        ("blink.tasks.reset_run", [sam_request.pk], "dir.onprem"),
    ]


@pytest.mark.parametrize("protected", [False, True], ids=["password", "refusal"])
def test_a_central_worker_texts_the_outcome_itself_without_the_sms_queue(
    acme_client, demo, sms_outbox, worker_queues, protected, broker,
    django_capture_on_commit_callbacks,
):
    from blink.resets import reset_run

    user = demo_blink_user(acme_client, demo, PHONE, protected=protected)
    with django_capture_on_commit_callbacks(execute=False):  # not run yet
        request = reset_request_create(blink_user=user, actor=ADMIN, channel="sms")
    worker_queues(CENTRAL_QUEUES)  # as a worker started with -Q default,directory,sms

    with broker.publishing(), django_capture_on_commit_callbacks(execute=True):
        reset_run(request_id=request.pk)

    assert broker.queued() == []  # nothing went through the sms queue
    [sms] = sms_outbox
    request.refresh_from_db()
    if protected:
        assert request.status == ResetRequest.Status.FAILED
        assert sms["body"].startswith("Blink could not reset your password just now.")
    else:
        assert request.status == ResetRequest.Status.SENT
        password = password_in(sms_outbox[-1]["body"])
        assert DemoDirectory(demo.pk).sign_in(user.object_id, password) == "must_change"
        assert Message.objects.get(kind="reset").status == Message.Status.SENT


def test_a_run_that_died_before_its_text_went_out_sends_it_when_the_task_comes_back(
    acme_client, demo, sms_outbox, django_capture_on_commit_callbacks
):
    from blink.resets import reset_run

    user = demo_blink_user(acme_client, demo, PHONE)
    with django_capture_on_commit_callbacks(execute=False):
        request = reset_request_create(blink_user=user, actor=ADMIN, channel="sms")
    # The run commits the request as sent, and its worker dies before the text goes out.
    with django_capture_on_commit_callbacks(execute=False):
        reset_run(request_id=request.pk)
    assert sms_outbox == []
    assert Message.objects.filter(kind="reset", status="queued", attempts=0).exists()

    for _ in range(2):  # Celery hands the task back; then a duplicate delivery
        with django_capture_on_commit_callbacks(execute=True):
            reset_run(request_id=request.pk)

    assert len(sms_outbox) == 1
    assert DemoDirectory(demo.pk).sign_in(user.object_id, password_in(sms_outbox[-1]["body"])) == \
        "must_change"
    assert Message.objects.get(kind="reset").status == Message.Status.SENT
