"""Writes on directory connections and their snapshots."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection as db_connection
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
               "enabled", "protected", "password_never_expires", "on_premises_sync",
               "on_premises_id")
OTHER_FIELDS = ("name", "dn")


@transaction.atomic
def connection_save(
    *, client: Client, actor: Actor, kind: str, parameters: dict[str, Any],
    secrets: Mapping[str, str | None], queue: str = "directory", monitor_lockouts: bool = True,
    connection: Connection | None = None,
) -> Connection:
    """Create or change a client's connection. Empty secrets keep the stored ones; a
    secret given as None is removed (an Entra secret replaced by a certificate)."""
    creating = connection is None
    if connection is None:
        connection = Connection(client=client, kind=kind)
    stored = connection.secrets() if connection.secrets_token else {}
    stored.update({name: value for name, value in secrets.items() if value})
    for name in [name for name, value in secrets.items() if value is None]:
        stored.pop(name, None)
    connection.parameters = parameters
    connection.set_secrets(stored)
    connection.queue = queue
    connection.monitor_lockouts = monitor_lockouts
    # Saving is how an admin says "try again" (say, after buying the Entra licence that
    # sign-in logs need): lockout monitoring resumes and re-checks on the next poll.
    connection.lockout_monitoring_unavailable = ""
    connection.save()
    audit_record(
        company=client.company, actor=actor, client=client,
        action="connection.create" if creating else "connection.update",
        target=connection.get_kind_display(),
        # Which secrets changed, never their values.
        detail={"parameters": sorted(parameters), "secrets_changed": sorted(
            name for name, value in secrets.items() if value), "secrets_removed": sorted(
            name for name, value in secrets.items() if value is None)},
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
        last_sync_message=" ".join(snapshot.notes)[:500], last_sync_counts=counts,
    )
    return counts


def _text(value: Any) -> Any:
    """Directory text without NUL, which AD allows in names and PostgreSQL refuses."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


@transaction.atomic
def snapshot_apply(*, connection: Connection, snapshot: Snapshot) -> dict[str, int]:
    """Make the connection's ``Entry`` rows match ``snapshot``: add, change, remove.

    Written for 10,000-user directories: OUs are written first so every group and
    user is created with its parent already set, rows are kept in hand rather than
    read back, and all writes are bulk, so the query count depends on batch sizes,
    never on the number of rows.
    """
    kinds = (
        [(Entry.Kind.ORG_UNIT.value, ou.object_id, {"name": ou.name, "dn": ou.dn},
          ou.parent_dn) for ou in snapshot.org_units]
        + [(Entry.Kind.GROUP.value, g.object_id, {"name": g.name, "dn": g.dn}, g.parent_dn)
           for g in snapshot.groups]
        + [(Entry.Kind.USER.value, u.object_id, {
            "name": u.display_name or u.username, "dn": u.dn, "username": u.username,
            "upn": u.upn, "given_name": u.given_name, "surname": u.surname, "email": u.email,
            "mobile": u.mobile, "enabled": u.enabled, "protected": u.protected,
            "password_never_expires": u.password_never_expires,
            "on_premises_sync": u.on_premises_sync, "on_premises_id": u.on_premises_id},
           u.parent_dn) for u in snapshot.users]
    )
    wanted = {
        (kind, object_id): ({field: _text(value) for field, value in values.items()},
                            _text(parent).lower())
        for kind, object_id, values, parent in kinds
    }

    existing = {(e.kind, e.object_id): e for e in Entry.objects.filter(connection=connection)}
    removed = [e.pk for key, e in existing.items() if key not in wanted]
    removed_users = sum(1 for key in existing if key not in wanted and key[0] == "user")
    for start in range(0, len(removed), 1000):
        Entry.objects.filter(pk__in=removed[start:start + 1000]).delete()
    entries = {key: e for key, e in existing.items() if key in wanted}

    added: list[Entry] = []
    changed: list[Entry] = []

    def write(kind: str, ou_ids: dict[str, int] | None) -> None:
        """Create or update every wanted entry of ``kind`` with its parent OU resolved
        (``ou_ids`` None: leave parents to the caller)."""
        new, updated = [], []
        for key, (values, parent_dn) in wanted.items():
            if key[0] != kind:
                continue
            entry = entries.get(key)
            if ou_ids is None:
                parent_id = entry.parent_id if entry is not None else None
            else:
                parent_id = ou_ids.get(parent_dn)
            if entry is None:
                new.append(Entry(connection=connection, kind=kind, object_id=key[1],
                                 parent_id=parent_id, **values))
            elif entry.parent_id != parent_id or any(
                getattr(entry, field) != value for field, value in values.items()
            ):
                for field, value in values.items():
                    setattr(entry, field, value)
                entry.parent_id = parent_id
                updated.append(entry)
        for entry in Entry.objects.bulk_create(new, batch_size=1000):
            entries[(kind, entry.object_id)] = entry
        if updated:
            Entry.objects.bulk_update(updated, [*USER_FIELDS, "parent"], batch_size=500)
        added.extend(new)
        changed.extend(updated)

    # OUs first, without parents (an OU's parent may be new too), then their parents.
    write(Entry.Kind.ORG_UNIT.value, None)
    ou_ids = {e.dn.lower(): e.pk for (kind, _), e in entries.items()
              if kind == Entry.Kind.ORG_UNIT and e.dn}
    reparented = []
    for key, entry in entries.items():
        if key[0] == Entry.Kind.ORG_UNIT:
            parent_id = ou_ids.get(wanted[key][1])
            if entry.parent_id != parent_id:
                entry.parent_id = parent_id
                reparented.append(entry)
    if reparented:
        Entry.objects.bulk_update(reparented, ["parent"], batch_size=1000)
    write(Entry.Kind.GROUP.value, ou_ids)
    write(Entry.Kind.USER.value, ou_ids)

    # Group membership, nested groups already resolved by the adapter.
    user_ids = {key[1]: e.pk for key, e in entries.items() if key[0] == Entry.Kind.USER}
    wanted_members = {
        (entries[(Entry.Kind.GROUP.value, group.object_id)].pk, user_ids[member])
        for group in snapshot.groups for member in group.member_ids if member in user_ids
    }
    current_members = set(
        GroupMember.objects.filter(group__connection=connection).values_list("group_id",
                                                                             "user_id")
    )
    stale = current_members - wanted_members
    for group_id in {group for group, _ in stale}:
        GroupMember.objects.filter(
            group_id=group_id, user_id__in=[u for g, u in stale if g == group_id]
        ).delete()
    _members_insert(wanted_members - current_members)
    left, returned = _blink_users_follow(connection=connection, wanted=wanted)
    log.info("sync of connection %s: %d added, %d changed, %d removed", connection.pk,
             len(added), len(changed), len(removed))
    return {
        "org_units": len(snapshot.org_units), "groups": len(snapshot.groups),
        "users": len(snapshot.users), "added": len(added), "changed": len(changed),
        "removed": len(removed), "users_removed": removed_users,
        "blink_users_left": left, "blink_users_returned": returned,
    }


def _blink_users_follow(
    *, connection: Connection, wanted: dict[tuple[str, str], Any]
) -> tuple[int, int]:
    """Flag Blink users whose account left the directory, and restore those who came back.

    Blink users are never deleted by a sync: an admin decides what happens to them.
    """
    from blink.audit import SYSTEM, audit_record_many
    from blink.models import BlinkUser

    in_directory = {object_id for kind, object_id in wanted if kind == Entry.Kind.USER}
    company, client = connection.client.company, connection.client
    gone = [u for u in BlinkUser.objects.filter(connection=connection).exclude(
        status=BlinkUser.Status.LEFT_DIRECTORY).only("pk", "object_id", "username")
        if u.object_id not in in_directory]
    BlinkUser.objects.filter(pk__in=[u.pk for u in gone]).update(
        status=BlinkUser.Status.LEFT_DIRECTORY)
    audit_record_many(company=company, client=client, actor=SYSTEM,
                      action="blink_user.left_directory",
                      targets=[(u.username, {}) for u in gone])
    back = [u for u in BlinkUser.objects.filter(connection=connection,
                                                status=BlinkUser.Status.LEFT_DIRECTORY)
            if u.object_id in in_directory]
    for user in back:
        user.status = (BlinkUser.Status.ACTIVE if user.phone else
                       BlinkUser.Status.INVITED if user.email else BlinkUser.Status.NEEDS_EMAIL)
    BlinkUser.objects.bulk_update(back, ["status"])
    audit_record_many(company=company, client=client, actor=SYSTEM,
                      action="blink_user.back_in_directory",
                      targets=[(u.username, {"status": u.status}) for u in back])
    return len(gone), len(back)


def _members_insert(pairs: set[tuple[int, int]]) -> None:
    """Insert group memberships; on PostgreSQL as one statement per 50,000 pairs."""
    rows = sorted(pairs)
    if db_connection.vendor == "postgresql":
        table = GroupMember._meta.db_table
        with db_connection.cursor() as cursor:
            for start in range(0, len(rows), 50_000):
                chunk = rows[start:start + 50_000]
                cursor.execute(
                    f'INSERT INTO "{table}" (group_id, user_id) '  # noqa: S608 (our table)
                    "SELECT * FROM unnest(%s::bigint[], %s::bigint[])",
                    [[g for g, _ in chunk], [u for _, u in chunk]],
                )
        return
    GroupMember.objects.bulk_create([GroupMember(group_id=g, user_id=u) for g, u in rows],
                                    batch_size=2000)
