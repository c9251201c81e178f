from __future__ import annotations

from django.core import mail
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from blink.audit import SYSTEM
from blink.console import RESENDABLE
from blink.invitations import blink_user_invite, blink_user_reinvite
from blink.models import AuditEvent, BlinkUser
from directory.base import DirectoryUser, Snapshot
from directory.models import Connection
from directory.services import connection_save, snapshot_apply
from tests.conftest import demo_blink_user


def directory_of(client, size: int, *, offset: int = 0):
    connection = Connection.objects.filter(client=client).first() or connection_save(
        client=client, actor=SYSTEM, kind="demo", parameters={}, secrets={})
    users = [DirectoryUser(object_id=f"u{n}", username=f"user{n}", display_name=f"User {n}",
                           email="" if n % 10 == 9 else f"user{n}@globex.example",
                           protected=n == offset, enabled=n != offset + 1)
             for n in range(offset, offset + size)]
    snapshot_apply(connection=connection, snapshot=Snapshot([], [], users))
    return [u.object_id for u in users]


def test_invite_sorts_users_and_emails_those_with_an_address(
    acme_client, django_capture_on_commit_callbacks
):
    ids = directory_of(acme_client, 20)
    with django_capture_on_commit_callbacks(execute=True):
        result = blink_user_invite(client=acme_client, actor=SYSTEM, object_ids=ids)
    assert len(result.invited) == 16 and len(result.needs_email) == 2
    assert sorted(why for _, why in result.skipped) == [
        "a privileged account; Blink refuses those", "disabled in the directory"]
    assert len(mail.outbox) == 16
    assert BlinkUser.objects.filter(status="needs_email").count() == 2
    assert AuditEvent.objects.filter(action="blink_user.invite").count() == 18
    again = blink_user_invite(client=acme_client, actor=SYSTEM, object_ids=ids)
    assert not again.invited and len(again.skipped) == 20


def test_ids_of_another_clients_directory_are_ignored(acme_client, rival_client):
    theirs = directory_of(rival_client, 5)
    result = blink_user_invite(client=acme_client, actor=SYSTEM, object_ids=theirs)
    assert (result.invited, result.needs_email, result.skipped) == ([], [], [])
    assert not BlinkUser.objects.exists()


def test_inviting_a_whole_ou_takes_bulk_queries_not_one_per_user(acme_client):
    def queries(size: int, offset: int) -> int:
        ids = directory_of(acme_client, size, offset=offset)
        with CaptureQueriesContext(db) as ctx:
            blink_user_invite(client=acme_client, actor=SYSTEM, object_ids=ids)
        return len(ctx.captured_queries)

    # Only batch sizes add queries (SQLite allows few variables per statement).
    small, large = queries(10, 0), queries(200, 1000)
    assert large - small < 190 / 10


def test_resend_activation_leaves_alone_a_user_who_activated_meanwhile(
    acme_client, demo_connection, django_capture_on_commit_callbacks
):
    """The admin ticked the user while they were Invited; they finished activation before
    the resend reached them: their phone and status stay, and no email goes."""
    invited = demo_blink_user(acme_client, demo_connection, "+14155550190", status="invited")
    invited.email = "ivy@globex.example"
    invited.save(update_fields=["email"])
    BlinkUser.objects.filter(pk=invited.pk).update(status=BlinkUser.Status.ACTIVE)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        resent = blink_user_reinvite(blink_user=invited, actor=SYSTEM, only=RESENDABLE)

    assert resent is None
    fresh = BlinkUser.objects.get(pk=invited.pk)
    assert (fresh.status, str(fresh.phone)) == (BlinkUser.Status.ACTIVE, "+14155550190")
    assert mail.outbox == []
    assert not AuditEvent.objects.filter(action="blink_user.reinvite").exists()
    # Reset User, which asks for no status, still starts an Active user over.
    with django_capture_on_commit_callbacks(execute=True):
        blink_user_reinvite(blink_user=invited, actor=SYSTEM)
    fresh.refresh_from_db()
    assert (fresh.status, fresh.phone) == (BlinkUser.Status.INVITED, None)
