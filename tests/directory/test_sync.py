from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from blink.audit import SYSTEM
from directory.base import DirectoryUser, Group, OrgUnit, Snapshot
from directory.demo import demo_directory_seed
from directory.models import Connection, Entry, GroupMember
from directory.services import (
    connection_save,
    directory_sync,
    directory_sync_request,
    snapshot_apply,
)

BASE = "DC=corp,DC=example"


@pytest.fixture
def connection(acme_client) -> Connection:
    return connection_save(client=acme_client, actor=SYSTEM, kind="demo", parameters={},
                           secrets={})


def make_snapshot(users: int, *, rename: str = "", drop: int = 0) -> Snapshot:
    ous = [OrgUnit("ou-root", "Corp", f"OU=Corp,{BASE}", BASE),
           OrgUnit("ou-sales", "Sales", f"OU=Sales,OU=Corp,{BASE}", f"OU=Corp,{BASE}")]
    people = [
        DirectoryUser(
            object_id=f"u{n}", username=f"user{n}",
            display_name=rename if (rename and n == 0) else f"User {n}",
            dn=f"CN=User {n},OU=Sales,OU=Corp,{BASE}", parent_dn=f"OU=Sales,OU=Corp,{BASE}",
        )
        for n in range(drop, users)
    ]
    group = Group("g-all", "Everyone", f"CN=Everyone,OU=Corp,{BASE}", f"OU=Corp,{BASE}",
                  member_ids=frozenset(u.object_id for u in people))
    return Snapshot(org_units=ous, groups=[group], users=people)


def test_first_sync_builds_the_tree_and_memberships(connection):
    counts = snapshot_apply(connection=connection, snapshot=make_snapshot(5))
    assert counts["added"] == 8 and counts["users"] == 5
    sales = Entry.objects.get(connection=connection, object_id="ou-sales")
    assert sales.parent is not None and sales.parent.name == "Corp"
    assert sales.children.filter(kind="user").count() == 5
    group = Entry.objects.get(object_id="g-all")
    assert GroupMember.objects.filter(group=group).count() == 5


def test_second_sync_with_no_change_writes_nothing(connection):
    snapshot_apply(connection=connection, snapshot=make_snapshot(5))
    counts = snapshot_apply(connection=connection, snapshot=make_snapshot(5))
    assert (counts["added"], counts["changed"], counts["removed"]) == (0, 0, 0)


def test_changes_and_removals_are_applied(connection):
    snapshot_apply(connection=connection, snapshot=make_snapshot(5))
    counts = snapshot_apply(connection=connection, snapshot=make_snapshot(5, rename="Renamed",
                                                                          drop=0))
    assert counts["changed"] == 1
    assert Entry.objects.get(object_id="u0").name == "Renamed"
    counts = snapshot_apply(connection=connection, snapshot=make_snapshot(5, drop=2))
    assert counts["removed"] == 2 and counts["users_removed"] == 2
    assert not Entry.objects.filter(object_id__in=["u0", "u1"]).exists()
    assert GroupMember.objects.filter(group__object_id="g-all").count() == 3


def test_a_password_set_never_to_expire_is_recorded_and_cleared(connection):
    snapshot = make_snapshot(2)
    snapshot_apply(connection=connection, snapshot=snapshot)
    assert not Entry.objects.filter(password_never_expires=True).exists()

    flagged = dataclasses.replace(snapshot.users[0], password_never_expires=True)
    counts = snapshot_apply(connection=connection, snapshot=dataclasses.replace(
        snapshot, users=[flagged, *snapshot.users[1:]]))
    assert counts["changed"] == 1
    assert list(Entry.objects.filter(password_never_expires=True)
                .values_list("object_id", flat=True)) == ["u0"]

    snapshot_apply(connection=connection, snapshot=snapshot)
    assert not Entry.objects.filter(password_never_expires=True).exists()


def test_sync_queries_do_not_grow_with_the_directory(connection):
    def queries(size: int) -> int:
        Entry.objects.filter(connection=connection).delete()
        with CaptureQueriesContext(db) as ctx:
            snapshot_apply(connection=connection, snapshot=make_snapshot(size))
        return len(ctx.captured_queries)

    # Only batch sizes (SQLite allows few variables per statement) add queries, never rows.
    small, large = queries(10), queries(400)
    assert large - small < 400 / 40


def test_demo_sync_through_the_queue(connection, django_capture_on_commit_callbacks):
    demo_directory_seed(connection)
    with django_capture_on_commit_callbacks(execute=True):
        directory_sync_request(connection=connection, actor=SYSTEM)
    connection.refresh_from_db()
    assert connection.last_sync_status == "ok"
    assert connection.last_sync_counts["users"] == Entry.objects.filter(kind="user").count() > 50
    assert Entry.objects.filter(kind="user", protected=True).get().username == "dadmin"


def test_a_sync_nobody_queued_does_not_run(connection):
    assert directory_sync(connection_id=connection.pk) is None
    connection.refresh_from_db()
    assert connection.last_sync_status == "never"


def test_a_sync_left_running_by_a_dead_worker_runs_again(connection):
    demo_directory_seed(connection)
    Connection.objects.filter(pk=connection.pk).update(
        last_sync_status="running", last_sync_at=timezone.now()
    )
    assert directory_sync(connection_id=connection.pk) is None  # still fresh: someone has it
    Connection.objects.filter(pk=connection.pk).update(
        last_sync_at=timezone.now() - timedelta(hours=1)
    )
    assert directory_sync(connection_id=connection.pk) is not None


def test_a_failed_sync_keeps_the_snapshot_and_says_why(acme_client):
    # A real Active Directory connection to a port where nothing listens.
    unreachable = connection_save(
        client=acme_client, actor=SYSTEM, kind="active_directory",
        parameters={"url": "ldaps://127.0.0.1:1", "bind_user": "svc@corp.example",
                    "base_dn": "DC=corp,DC=example"},
        secrets={"bind_password": "Service-Pa55word"},
    )
    snapshot_apply(connection=unreachable, snapshot=make_snapshot(3))
    Connection.objects.filter(pk=unreachable.pk).update(last_sync_status="queued")
    assert directory_sync(connection_id=unreachable.pk) is None
    unreachable.refresh_from_db()
    assert unreachable.last_sync_status == "failed"
    assert "127.0.0.1" in unreachable.last_sync_message
    assert Entry.objects.filter(connection=unreachable, kind="user").count() == 3


def test_blink_users_who_leave_the_directory_are_flagged_not_deleted(connection, acme_client):
    from blink.models import AuditEvent, BlinkUser

    snapshot_apply(connection=connection, snapshot=make_snapshot(3))
    gone = BlinkUser.objects.create(client=acme_client, connection=connection, object_id="u0",
                                    username="user0", phone="+14155550100", status="active")
    stays = BlinkUser.objects.create(client=acme_client, connection=connection,
                                     object_id="u2", username="user2", status="invited")
    counts = snapshot_apply(connection=connection, snapshot=make_snapshot(3, drop=1))
    assert counts["blink_users_left"] == 1
    gone.refresh_from_db()
    stays.refresh_from_db()
    assert (gone.status, str(gone.phone)) == ("left_directory", "+14155550100")
    assert stays.status == "invited"
    assert AuditEvent.objects.filter(action="blink_user.left_directory",
                                     target_label="user0").count() == 1
    # Flagged once, not at every sync.
    snapshot_apply(connection=connection, snapshot=make_snapshot(3, drop=1))
    assert AuditEvent.objects.filter(action="blink_user.left_directory").count() == 1

    counts = snapshot_apply(connection=connection, snapshot=make_snapshot(3))
    assert counts["blink_users_returned"] == 1
    gone.refresh_from_db()
    assert gone.status == "active"
