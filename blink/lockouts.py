"""Lockout monitoring: beat asks every monitored directory which Active Blink users are
locked, and each new lockout is told to its user once, by SMS.

``lockouts_poll_all`` (beat, every BLINK_LOCKOUT_POLL_SECONDS) queues one
``lockouts_poll`` per connection on the connection's own queue; that makes ONE
``locked_out()`` call for the connection's Active Blink users. A lockout is a
``LockoutNotice`` row, one open at a time per user; it is decided with the user's row
locked, and the row, its SMS and the user's ``locked_since`` are written in one
transaction, so a restarted poller, a duplicate task or two workers racing each other send
one notice, never two. Where the directory gives a lockout's own start (AD), another start
is another lockout (unlocked elsewhere and locked again between two polls); Entra gives only
its latest refused sign-in, so an open lockout there stays the same one until the log no
longer holds a refusal, or holds none since Blink's last reset. When the directory no
longer reports the user locked, the notice closes and ``locked_since`` clears. The notice
offers only the replies Blink would act on, and a user gets at most ``NOTICES_PER_DAY``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from blink.audit import Actor, audit_record, audit_record_many
from blink.models import AuditEvent, BlinkUser, LockoutNotice
from directory.backends import directory_for
from directory.base import DirectoryError
from directory.models import Connection, Entry
from sms.services import sms_send

log = logging.getLogger(__name__)

MONITOR = Actor(label="Blink lockout monitor")
# Lockout notices a user gets in 24 hours at most (an SMS send cap, SECURITY.md): someone
# who locks an account over and over must not text its user all day.
NOTICES_PER_DAY = 3
# Connections whose last poll failed (a cache flag): the failure is audited once per streak.
FAILING_KEY = "lockouts-failing:{}"


def lockout_text(blink_user: BlinkUser, *, unlocks: bool = True, resets: bool = True) -> str:
    """The SMS that tells a user their account is locked, and what to text back: only what
    Blink would act on. ``unlocks``: whether the directory can clear a lockout (Entra's
    smart lockout ends only by itself or with a new password); ``resets``: whether Blink
    can reach the user's password at all (not for an Entra user synced from an AD that
    Blink has no connection to)."""
    locked = f"Your account {blink_user.username} is locked."
    paused = blink_user.paused_until is not None and blink_user.paused_until > timezone.now()
    if blink_user.pin_missing() or paused or not resets:
        # Their texts would be refused: no PIN yet, too many wrong codes or PINs, or a
        # password out of Blink's reach.
        support = blink_user.client.company.support_email or "your IT support"
        return f"{locked} Contact {support} to unlock it."
    if blink_user.client.sms_reset_needs_pin:
        if not unlocks:
            return f"{locked} Reply RESET and your PIN (e.g. RESET 1234) for a new password."
        return (f"{locked} Reply UNLOCK and your PIN (e.g. UNLOCK 1234) to unlock it, or RESET "
                "and your PIN for a new password.")
    if not unlocks:
        return f"{locked} Reply RESET for a new password."
    return f"{locked} Reply UNLOCK to unlock it or RESET for a new password."


# Blink users some poll looks at: Active, on a live client, on a connection that monitors
# lockouts and can.
WATCHED = Q(status=BlinkUser.Status.ACTIVE, client__archived_at__isnull=True,
            connection__monitor_lockouts=True, connection__lockout_monitoring_unavailable="")


def monitored_connections() -> list[Connection]:
    """Connections to poll: monitoring on and available, client not archived, and at least
    one Active Blink user."""
    active = BlinkUser.objects.filter(connection=OuterRef("pk"),
                                      status=BlinkUser.Status.ACTIVE)
    return list(
        Connection.objects.filter(monitor_lockouts=True, lockout_monitoring_unavailable="",
                                  client__archived_at__isnull=True)
        .filter(Exists(active)).only("pk", "queue")
    )


def _unwatched_close() -> None:
    """End the lockouts of users no poll looks at any more (no longer Active, client
    archived, monitoring off or unavailable): nothing else would, and Blink Users would show
    them locked for good."""
    unwatched = BlinkUser.objects.exclude(WATCHED)
    stale = unwatched.filter(Q(locked_since__isnull=False)
                             | Q(lockout_notices__closed_at__isnull=True,
                                 lockout_notices__isnull=False))
    with transaction.atomic():
        ids = _users_lock(stale.values_list("pk", flat=True).distinct())
        if not ids:
            return
        LockoutNotice.objects.filter(closed_at=None, blink_user_id__in=ids) \
            .update(closed_at=timezone.now())
        BlinkUser.objects.filter(pk__in=ids).update(locked_since=None)
    log.info("forgot the lockouts of %d blink user(s) no longer watched", len(ids))


def _users_lock(pks: Iterable[int]) -> list[int]:
    """Lock these users' rows, in id order, as ``_notify`` locks one: whoever changes a
    user's lockout holds the user's row first, so two writers never wait on each other in
    a circle. Returns the ids locked."""
    return list(BlinkUser.objects.select_for_update().filter(pk__in=list(pks))
                .order_by("pk").values_list("pk", flat=True))


def lockouts_poll_all() -> int:
    """Queue one ``lockouts_poll`` per monitored connection on its queue; returns how many."""
    from blink.tasks import lockouts_poll

    try:
        _unwatched_close()
    except DatabaseError:
        # A housekeeping step: the polls still go out.
        log.exception("could not close the lockouts of users no longer watched")
    connections = monitored_connections()
    # A poll still queued when the next one is due is dropped: an offline on-premises
    # worker finds one round waiting when it comes back, not a backlog.
    expires = float(settings.BLINK_LOCKOUT_POLL_SECONDS)
    for connection in connections:
        lockouts_poll.apply_async((connection.pk,), queue=connection.queue, expires=expires)
    return len(connections)


def _unavailable(connection: Connection, error: DirectoryError) -> None:
    """The directory cannot report lockouts (e.g. Entra without P1/P2): say so on the
    connection, once, and stop polling it."""
    marked = Connection.objects.filter(pk=connection.pk, lockout_monitoring_unavailable="") \
        .update(lockout_monitoring_unavailable=error.message[:300])
    if marked:
        log.warning("lockout monitoring unavailable for connection %s: %s", connection.pk,
                    error.code)
        audit_record(company=connection.client.company, client=connection.client,
                     actor=MONITOR, action="lockouts.unavailable", target=str(connection),
                     result=AuditEvent.Result.FAILED,
                     detail={"connection": connection.pk, "reason": error.message})


def _failed(connection: Connection, error: DirectoryError) -> None:
    """A poll failed: log and audit the first failure of a streak, not every poll."""
    try:
        first = bool(cache.add(FAILING_KEY.format(connection.pk), 1, timeout=None))
    except Exception:
        first = True
    if not first:
        log.info("lockout poll of connection %s still failing (%s)", connection.pk, error.code)
        return
    log.warning("lockout poll of connection %s failed (%s): %s", connection.pk, error.code,
                error.message)
    audit_record(company=connection.client.company, client=connection.client, actor=MONITOR,
                 action="lockouts.poll", target=str(connection),
                 result=AuditEvent.Result.FAILED,
                 detail={"connection": connection.pk, "reason": error.message})


def _recovered(connection: Connection) -> None:
    try:
        was_failing = bool(cache.delete(FAILING_KEY.format(connection.pk)))
    except Exception:
        return
    if was_failing:
        log.info("lockout poll of connection %s works again", connection.pk)
        audit_record(company=connection.client.company, client=connection.client,
                     actor=MONITOR, action="lockouts.poll", target=str(connection),
                     detail={"connection": connection.pk, "recovered": True})


def _notify(blink_user: BlinkUser, since: datetime, *, exact: bool, unlocks: bool,
            reset_ends: bool, resets: bool = True) -> bool:
    """Record this lockout and tell the user, unless it is one they were told about or no
    longer watched; returns whether this call was the one that told them.

    The user's row is locked while deciding, so two polls at once (a duplicate task, two
    workers, a poll that ran over into the next) decide one after the other. ``exact``:
    whether ``since`` is the lockout's own start; ``unlocks`` and ``resets``: what the
    user's replies can do (``lockout_text``); ``reset_ends``: whether Blink's reset ends it
    (Entra, not synced from AD).
    """
    now = timezone.now()
    with transaction.atomic():
        # Read again under the lock: the directory's answer may have taken minutes, and
        # meanwhile the user may have left, been reset, or no longer be watched at all.
        watched = (BlinkUser.objects.select_for_update(of=("self",))
                   .select_related("client__company")
                   .filter(WATCHED, pk=blink_user.pk,
                           connection_id=blink_user.connection_id).first())
        if watched is None:
            return False  # not watched any more: _unwatched_close ends what it left open
        blink_user = watched
        reset_at = blink_user.last_reset_at
        if reset_ends and reset_at is not None and since < reset_at:
            return False  # reset during the poll: the refusals are from before it
        told = LockoutNotice.objects.filter(blink_user=blink_user, closed_at=None).first()
        if told is not None and exact and told.locked_since > since:
            return False  # a poll that asked later told them of a newer lockout already
        if told is not None and told.locked_since != since and exact:
            told = None  # it ended and the account locked again between two polls
        if told is None:
            # Told already, then closed: Blink unlocked it before the directory said so.
            told = LockoutNotice.objects.filter(blink_user=blink_user, locked_since=since).first()
        if told is not None:
            LockoutNotice.objects.filter(blink_user=blink_user, closed_at=None) \
                .exclude(pk=told.pk).update(closed_at=now)
            LockoutNotice.objects.filter(pk=told.pk).update(closed_at=None)
            BlinkUser.objects.filter(pk=blink_user.pk).update(locked_since=told.locked_since)
            return False
        # A new lockout: any earlier one is over.
        LockoutNotice.objects.filter(blink_user=blink_user, closed_at=None).update(closed_at=now)
        notice = LockoutNotice.objects.create(blink_user=blink_user, locked_since=since)
        BlinkUser.objects.filter(pk=blink_user.pk).update(locked_since=since)
        detail: dict[str, object] = {"locked_since": since.isoformat(), "notice": notice.pk}
        texted = LockoutNotice.objects.filter(blink_user=blink_user, message__isnull=False,
                                              noticed_at__gte=now - timedelta(days=1)).count()
        if texted >= NOTICES_PER_DAY:
            # Someone locking the account over and over must not text the user all day.
            audit_record(company=blink_user.client.company, client=blink_user.client,
                         actor=MONITOR, action="lockout.notice", target=blink_user.username,
                         result=AuditEvent.Result.REFUSED,
                         detail={**detail, "reason": f"more than {NOTICES_PER_DAY} lockout "
                                                     "notices in 24 hours; not texted"})
            log.info("blink user %s is locked out again; not texted (daily cap)",
                     blink_user.pk)
            return False
        message = sms_send(company=blink_user.client.company, phone=blink_user.phone,
                           blink_user=blink_user, kind="lockout",
                           text=lockout_text(blink_user, unlocks=unlocks, resets=resets))
        LockoutNotice.objects.filter(pk=notice.pk).update(message=message)
        audit_record(company=blink_user.client.company, client=blink_user.client,
                     actor=MONITOR, action="lockout.notice", target=blink_user.username,
                     detail=detail)
    log.info("blink user %s is locked out (since %s); told by sms %s", blink_user.pk,
             since.isoformat(), message.pk)
    return True


def lockouts_poll(*, connection_id: int) -> None:
    """Ask one directory which of its Active Blink users are locked, tell the newly locked
    once, and close the lockouts that ended. Safe to run twice or concurrently."""
    connection = (
        Connection.objects.select_related("client__company")
        .filter(pk=connection_id, monitor_lockouts=True, lockout_monitoring_unavailable="",
                client__archived_at__isnull=True).first()
    )
    if connection is None:
        return
    users = list(BlinkUser.objects.filter(connection=connection, status=BlinkUser.Status.ACTIVE)
                 .select_related("client__company"))
    if not users:
        return
    # Read before the directory is asked: a notice opened after that comes from a poll that
    # asked later, and this poll's older answer must not close it.
    opened = list(LockoutNotice.objects.filter(blink_user__connection=connection, closed_at=None)
                  .values_list("pk", "blink_user_id", "locked_since"))
    told = {user_id: locked_since for _, user_id, locked_since in opened}
    directory = directory_for(connection)
    try:
        # The AD connection stays open for the next poll and the resets this worker runs
        # (closing it also dropped the policies kept on it); workers close it at shutdown.
        locked = directory.locked_out([user.object_id for user in users])
    except DirectoryError as error:
        if error.code == "lockout_unavailable":
            _unavailable(connection, error)
        else:
            _failed(connection, error)
        return
    _recovered(connection)

    # Entra users synced from AD: Blink resets and unlocks them in AD, which does not end
    # Entra's own lockout, and their UNLOCK does reach a directory that can unlock.
    synced: set[str] = set()
    anchored: set[str] = set()  # ...whose AD account Entra names (see password_account)
    if not directory.unlocks:
        for object_id, anchor in Entry.objects.filter(
                connection=connection, kind=Entry.Kind.USER,
                on_premises_sync=True).values_list("object_id", "on_premises_id"):
            synced.add(object_id)
            if anchor:
                anchored.add(object_id)
    # Without the client's AD connection, Blink can reset or unlock none of them.
    synced_reachable = bool(synced) and Connection.objects.filter(
        client_id=connection.client_id, kind=Connection.Kind.ACTIVE_DIRECTORY).exists()
    ended: list[BlinkUser] = []
    for user in users:
        since = locked.get(user.object_id)
        reset_ends = not directory.lockout_start_exact and user.object_id not in synced
        if (since is not None and reset_ends
                and user.last_reset_at is not None and since < user.last_reset_at):
            # Entra's log still holds the refusals from before Blink's reset: over.
            since = None
        if since is None:
            if user.locked_since is not None or user.pk in told:
                ended.append(user)
        elif user.locked_since is not None and user.pk in told and (
                told[user.pk] == since or not directory.lockout_start_exact):
            continue  # the lockout the user was told about (no query in the steady state)
        else:
            _notify(user, since, exact=directory.lockout_start_exact,
                    unlocks=directory.unlocks or user.object_id in synced,
                    reset_ends=reset_ends,
                    resets=user.object_id not in synced
                    or (synced_reachable and user.object_id in anchored))
    if ended:
        ids = {user.pk for user in ended}
        _close(connection, ended, notices=[pk for pk, user_id, _ in opened if user_id in ids])


def _close(connection: Connection, ended: list[BlinkUser], *, notices: list[int]) -> None:
    """End these users' lockouts: close ``notices`` (those the poll saw open before it asked
    the directory) and clear ``locked_since`` of the users left with none open."""
    now = timezone.now()
    with transaction.atomic():
        _users_lock([user.pk for user in ended])
        LockoutNotice.objects.filter(pk__in=notices, closed_at=None).update(closed_at=now)
        # A notice still open was opened by a poll that asked later: that lockout goes on.
        going_on = set(LockoutNotice.objects.filter(blink_user__in=ended, closed_at=None)
                       .values_list("blink_user_id", flat=True))
        ended = [user for user in ended if user.pk not in going_on]
        ids = [user.pk for user in ended]
        BlinkUser.objects.filter(pk__in=ids).update(locked_since=None)
        audit_record_many(company=connection.client.company, client=connection.client,
                          actor=MONITOR, action="lockout.ended",
                          targets=[(user.username, {"locked_since": user.locked_since.isoformat()
                                                    if user.locked_since else None})
                                   for user in ended])
    log.info("lockouts ended for %d blink user(s) of connection %s", len(ids), connection.pk)
