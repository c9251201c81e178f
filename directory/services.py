"""Writes on directory connections and their snapshots."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from blink.audit import Actor, audit_record
from clients.models import Client
from directory.backends import directory_for
from directory.base import DirectoryError, Snapshot
from directory.encryption import SecretsUnreadable
from directory.models import Connection, Entry, GroupMember

log = logging.getLogger(__name__)

# Fields of an Entry that a sync copies from the directory.
USER_FIELDS = ("name", "dn", "username", "upn", "given_name", "surname", "email", "mobile",
               "enabled", "protected", "on_premises_sync")
OTHER_FIELDS = ("name", "dn")


@transaction.atomic
def connection_save(
    *, client: Client, actor: Actor, kind: str, parameters: dict[str, Any],
    secrets: dict[str, str], queue: str = "directory", monitor_lockouts: bool = True,
    connection: Connection | None = None,
) -> Connection:
    """Create or change a client's connection. Empty secrets keep the stored ones."""
    creating = connection is None
    if connection is None:
        connection = Connection(client=client, kind=kind)
    stored = connection.secrets() if connection.secrets_token else {}
    stored.update({name: value for name, value in secrets.items() if value})
    connection.parameters = parameters
    connection.set_secrets(stored)
    connection.queue = queue
    connection.monitor_lockouts = monitor_lockouts
    connection.save()
    audit_record(
        company=client.company, actor=actor, client=client,
        action="connection.create" if creating else "connection.update",
        target=connection.get_kind_display(),
        # Which secrets changed, never their values.
        detail={"parameters": sorted(parameters), "secrets_changed": sorted(
            name for name, value in secrets.items() if value)},
    )
    return connection


@transaction.atomic
def connection_remove(*, connection: Connection, actor: Actor) -> None:
    """Remove a connection and its snapshot."""
    audit_record(company=connection.client.company, actor=actor, client=connection.client,
                 action="connection.remove", target=connection.get_kind_display())
    connection.delete()


def _enqueue(task_name: str, connection: Connection) -> None:
    from directory import tasks

    task = getattr(tasks, task_name)
    transaction.on_commit(
        lambda: task.apply_async(args=(connection.pk,), queue=connection.queue)
    )


@transaction.atomic
def connection_test_request(*, connection: Connection, actor: Actor) -> None:
    """Queue a connection test; its outcome lands on the connection."""
    Connection.objects.filter(pk=connection.pk).update(
        last_test_status=Connection.Outcome.QUEUED, last_test_message=""
    )
    audit_record(company=connection.client.company, actor=actor, client=connection.client,
                 action="connection.test", target=connection.get_kind_display())
    _enqueue("connection_test", connection)


@transaction.atomic
def directory_sync_request(*, connection: Connection, actor: Actor) -> None:
    """Queue a sync of the connection's snapshot."""
    Connection.objects.filter(pk=connection.pk).update(
        last_sync_status=Connection.Outcome.QUEUED
    )
    audit_record(company=connection.client.company, actor=actor, client=connection.client,
                 action="directory.sync", target=connection.get_kind_display())
    _enqueue("directory_sync", connection)


def _claim(connection_id: int, job: str) -> bool:
    """Move a queued job ("test" or "sync") to running; only one worker gets it.

    A job left running by a worker that died (Celery hands the task to another
    worker) can be claimed again once it is older than the task time limit.
    """
    status, started = f"last_{job}_status", f"last_{job}_at"
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 30)
    claimable = Q(**{status: Connection.Outcome.QUEUED}) | Q(
        **{status: Connection.Outcome.RUNNING, f"{started}__lt": stale}
    )
    claimed = Connection.objects.filter(claimable, pk=connection_id).update(
        **{status: Connection.Outcome.RUNNING, started: now}
    )
    return claimed == 1


def connection_test(*, connection_id: int) -> None:
    """Run a queued connection test and record the sentence it ends with."""
    if not _claim(connection_id, "test"):
        return
    connection = Connection.objects.get(pk=connection_id)
    try:
        message = directory_for(connection).test_connection()
        status = Connection.Outcome.OK
    except DirectoryError as exc:
        message, status = exc.message, Connection.Outcome.FAILED
    except SecretsUnreadable as exc:
        message, status = str(exc), Connection.Outcome.FAILED
    Connection.objects.filter(pk=connection_id).update(
        last_test_status=status, last_test_message=message[:500], last_test_at=timezone.now()
    )


def directory_sync(*, connection_id: int, claimed: bool = False) -> dict[str, int] | None:
    """Read the whole directory and bring the snapshot in line with it.

    Returns the counts, or None when the sync was not queued (someone else ran it).
    """
    if not claimed and not _claim(connection_id, "sync"):
        return None
    connection = Connection.objects.get(pk=connection_id)
    try:
        snapshot = directory_for(connection).snapshot()
        counts = snapshot_apply(connection=connection, snapshot=snapshot)
    except (DirectoryError, SecretsUnreadable) as exc:
        message = exc.message if isinstance(exc, DirectoryError) else str(exc)
        log.warning("sync of connection %s failed: %s", connection_id, message)
        Connection.objects.filter(pk=connection_id).update(
            last_sync_status=Connection.Outcome.FAILED, last_sync_message=message[:500],
            last_sync_at=timezone.now(),
        )
        return None
    Connection.objects.filter(pk=connection_id).update(
        last_sync_status=Connection.Outcome.OK, last_sync_at=timezone.now(),
        last_sync_message="", last_sync_counts=counts,
    )
    return counts


def _text(value: Any) -> Any:
    """Directory text without NUL, which AD allows in names and PostgreSQL refuses."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


@transaction.atomic
def snapshot_apply(*, connection: Connection, snapshot: Snapshot) -> dict[str, int]:
    """Make the connection's ``Entry`` rows match ``snapshot``: add, change, remove.

    Written for 10,000-user directories: a constant number of queries plus bulk
    writes in batches, whatever the size.
    """
    wanted: dict[tuple[str, str], dict[str, Any]] = {}
    parent_dn: dict[tuple[str, str], str] = {}
    for ou in snapshot.org_units:
        key = (Entry.Kind.ORG_UNIT.value, ou.object_id)
        wanted[key] = {"name": ou.name, "dn": ou.dn}
        parent_dn[key] = ou.parent_dn
    for group in snapshot.groups:
        key = (Entry.Kind.GROUP.value, group.object_id)
        wanted[key] = {"name": group.name, "dn": group.dn}
        parent_dn[key] = group.parent_dn
    for user in snapshot.users:
        key = (Entry.Kind.USER.value, user.object_id)
        wanted[key] = {
            "name": user.display_name or user.username, "dn": user.dn,
            "username": user.username, "upn": user.upn, "given_name": user.given_name,
            "surname": user.surname, "email": user.email, "mobile": user.mobile,
            "enabled": user.enabled, "protected": user.protected,
            "on_premises_sync": user.on_premises_sync,
        }
        parent_dn[key] = user.parent_dn

    wanted = {key: {field: _text(value) for field, value in values.items()}
              for key, values in wanted.items()}
    parent_dn = {key: _text(dn) for key, dn in parent_dn.items()}
    existing = {
        (entry.kind, entry.object_id): entry
        for entry in Entry.objects.filter(connection=connection)
    }
    removed = [entry.pk for key, entry in existing.items() if key not in wanted]
    removed_users = [key[1] for key, entry in existing.items()
                     if key not in wanted and key[0] == Entry.Kind.USER]
    for start in range(0, len(removed), 1000):
        Entry.objects.filter(pk__in=removed[start:start + 1000]).delete()

    new_entries, changed_entries = [], []
    for key, values in wanted.items():
        entry = existing.get(key)
        if entry is None:
            new_entries.append(Entry(connection=connection, kind=key[0], object_id=key[1],
                                     **values))
            continue
        if any(getattr(entry, field) != value for field, value in values.items()):
            for field, value in values.items():
                setattr(entry, field, value)
            changed_entries.append(entry)
    Entry.objects.bulk_create(new_entries, batch_size=1000)
    if changed_entries:
        Entry.objects.bulk_update(changed_entries, USER_FIELDS, batch_size=500)

    # Parents: now that every entry has an id, point each at the OU holding it.
    entries = {(e.kind, e.object_id): e for e in Entry.objects.filter(connection=connection)}
    ou_by_dn = {e.dn.lower(): e.pk for (kind, _), e in entries.items()
                if kind == Entry.Kind.ORG_UNIT and e.dn}
    reparented = []
    for key, entry in entries.items():
        parent_id = ou_by_dn.get(parent_dn.get(key, "").lower())
        if entry.parent_id != parent_id:
            entry.parent_id = parent_id
            reparented.append(entry)
    if reparented:
        Entry.objects.bulk_update(reparented, ["parent"], batch_size=1000)

    # Group membership, nested groups already resolved by the adapter.
    ids = {key[1]: e.pk for key, e in entries.items() if key[0] == Entry.Kind.USER}
    wanted_members = {
        (entries[(Entry.Kind.GROUP.value, group.object_id)].pk, ids[member])
        for group in snapshot.groups for member in group.member_ids if member in ids
    }
    current_members = set(
        GroupMember.objects.filter(group__connection=connection).values_list("group_id",
                                                                             "user_id")
    )
    stale = current_members - wanted_members
    if stale:
        stale_groups = {group for group, _ in stale}
        for group_id in stale_groups:
            GroupMember.objects.filter(
                group_id=group_id, user_id__in=[u for g, u in stale if g == group_id]
            ).delete()
    GroupMember.objects.bulk_create(
        [GroupMember(group_id=g, user_id=u) for g, u in wanted_members - current_members],
        batch_size=2000,
    )
    log.info("sync of connection %s: %d added, %d changed, %d removed", connection.pk,
             len(new_entries), len(changed_entries), len(removed))
    return {
        "org_units": len(snapshot.org_units), "groups": len(snapshot.groups),
        "users": len(snapshot.users), "added": len(new_entries),
        "changed": len(changed_entries), "removed": len(removed),
        "users_removed": len(removed_users),
    }
