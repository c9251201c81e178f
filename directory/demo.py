"""The demo directory: a small company kept in Blink's own database, for the trial.

It keeps the protocol's semantics — a password policy, protected accounts,
must-change-at-next-logon, lockouts after failed sign-ins — so every flow can be
tried without a server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction
from django.utils import timezone

from directory.base import (
    DirectoryError,
    DirectoryUser,
    Group,
    OrgUnit,
    PasswordPolicy,
    Snapshot,
)
from directory.models import Connection, DemoObject

LOCKOUT_DURATION = timedelta(minutes=30)
POLICY = PasswordPolicy(
    min_length=10, complexity=True, history_length=0, max_length=128,
    lockout_threshold=5, lockout_duration=LOCKOUT_DURATION,
)
DOMAIN = "contoso.example"
BASE_DN = "DC=contoso,DC=example"


def _dn(obj: DemoObject, by_id: dict[int, DemoObject]) -> str:
    parts = []
    current: DemoObject | None = obj
    while current is not None:
        parts.append(("OU=" if current.kind == DemoObject.Kind.ORG_UNIT else "CN=") + current.name)
        current = by_id.get(current.parent_id) if current.parent_id else None
    return ",".join([*parts, BASE_DN])


def _complex_enough(password: str) -> bool:
    categories = [
        any(c.islower() for c in password),
        any(c.isupper() for c in password),
        any(c.isdigit() for c in password),
        any(not c.isalnum() for c in password),
    ]
    return sum(categories) >= 3


class DemoDirectory:
    """The ``Directory`` protocol over ``DemoObject`` rows of one connection."""

    lockout_start_exact = True
    unlocks = True

    def __init__(self, connection_id: int) -> None:
        self.connection_id = connection_id

    def _objects(self) -> list[DemoObject]:
        return list(DemoObject.objects.filter(connection_id=self.connection_id))

    def _user(self, object_id: str) -> DemoObject:
        user = DemoObject.objects.filter(
            connection_id=self.connection_id, kind=DemoObject.Kind.USER, object_id=object_id
        ).first()
        if user is None:
            raise DirectoryError("This user is no longer in the directory.", permanent=True,
                                 code="not_found")
        return user

    def _memberships(self, objects: list[DemoObject]) -> dict[int, set[int]]:
        """Each group's users, nested groups resolved."""
        direct: dict[int, set[int]] = {o.pk: set() for o in objects if o.kind == "group"}
        through = DemoObject.members.through.objects.filter(
            from_demoobject__connection_id=self.connection_id
        ).values_list("from_demoobject_id", "to_demoobject_id")
        for group_id, member_id in through:
            direct.setdefault(group_id, set()).add(member_id)
        resolved: dict[int, set[int]] = {}

        def expand(group_id: int, seen: frozenset[int]) -> set[int]:
            if group_id in resolved:
                return resolved[group_id]
            users: set[int] = set()
            for member in direct.get(group_id, ()):
                if member in direct:
                    if member not in seen:
                        users |= expand(member, seen | {member})
                else:
                    users.add(member)
            resolved[group_id] = users
            return users

        for group_id in direct:
            expand(group_id, frozenset({group_id}))
        return resolved

    def _protected_ids(self, objects: list[DemoObject]) -> set[int]:
        members = self._memberships(objects)
        protected: set[int] = set()
        for o in objects:
            if o.kind == "group" and o.privileged:
                protected |= members.get(o.pk, set())
        return protected

    def test_connection(self) -> str:
        """Count the demo's users; there is nothing to reach."""
        count = DemoObject.objects.filter(connection_id=self.connection_id, kind="user").count()
        return f"Connected to the demo directory ({count} users)."

    def snapshot(self) -> Snapshot:
        """Everything in the demo directory."""
        objects = self._objects()
        by_id = {o.pk: o for o in objects}
        members = self._memberships(objects)
        protected = self._protected_ids(objects)
        ous, groups, users = [], [], []
        for o in objects:
            dn = _dn(o, by_id)
            parent_dn = _dn(by_id[o.parent_id], by_id) if o.parent_id else BASE_DN
            if o.kind == "ou":
                ous.append(OrgUnit(object_id=o.object_id, name=o.name, dn=dn, parent_dn=parent_dn))
            elif o.kind == "group":
                groups.append(Group(
                    object_id=o.object_id, name=o.name, dn=dn, parent_dn=parent_dn,
                    member_ids=frozenset(by_id[m].object_id for m in members.get(o.pk, ())),
                ))
            else:
                users.append(self._as_user(o, dn, parent_dn, o.pk in protected))
        return Snapshot(org_units=ous, groups=groups, users=users)

    @staticmethod
    def _as_user(o: DemoObject, dn: str, parent_dn: str, protected: bool) -> DirectoryUser:
        return DirectoryUser(
            object_id=o.object_id, username=o.username, upn=f"{o.username}@{DOMAIN}",
            display_name=o.name, given_name=o.given_name, surname=o.surname, email=o.email,
            mobile=o.mobile, enabled=o.enabled, protected=protected, dn=dn, parent_dn=parent_dn,
        )

    def get_user(self, object_id: str) -> DirectoryUser:
        """One demo user."""
        user = self._user(object_id)
        objects = self._objects()
        by_id = {o.pk: o for o in objects}
        parent_dn = _dn(by_id[user.parent_id], by_id) if user.parent_id else BASE_DN
        return self._as_user(user, _dn(user, by_id), parent_dn,
                             user.pk in self._protected_ids(objects))

    def password_policy(self, object_id: str | None = None) -> PasswordPolicy:
        """The demo's policy: 10 characters, complexity, lockout after 5 failures for 30 min."""
        return POLICY

    def reset_password(
        self, object_id: str, new_password: str, *, must_change: bool = True, unlock: bool = False
    ) -> None:
        """Set a password if it meets the policy, as AD would."""
        if self.is_protected(object_id):
            raise DirectoryError(
                "This account is privileged (a member of Domain Admins), so Blink does not "
                "reset it.", permanent=True, code="protected",
            )
        if len(new_password) < POLICY.min_length:
            raise DirectoryError(
                f"The directory refused the password: it must be at least {POLICY.min_length} "
                "characters.", permanent=True, code="policy",
            )
        if not _complex_enough(new_password):
            raise DirectoryError(
                "The directory refused the password: it must mix three of capitals, small "
                "letters, digits and symbols.", permanent=True, code="policy",
            )
        with transaction.atomic():
            user = self._user(object_id)
            user.password_hash = make_password(new_password)
            user.must_change_password = must_change
            fields = ["password_hash", "must_change_password"]
            if unlock:
                user.locked_at = None
                user.failed_logins = 0
                fields += ["locked_at", "failed_logins"]
            user.save(update_fields=fields)

    def unlock(self, object_id: str) -> None:
        """Clear the lockout; the password stays."""
        self._user(object_id)
        DemoObject.objects.filter(connection_id=self.connection_id, object_id=object_id).update(
            locked_at=None, failed_logins=0
        )

    def locked_out(self, object_ids: Iterable[str]) -> dict[str, datetime]:
        """Users among ``object_ids`` locked within the lockout duration, in one query."""
        since = timezone.now() - LOCKOUT_DURATION
        rows = DemoObject.objects.filter(
            connection_id=self.connection_id, kind="user", locked_at__gte=since,
            object_id__in=list(object_ids),
        ).values_list("object_id", "locked_at")
        return {object_id: locked_at for object_id, locked_at in rows if locked_at}

    def is_protected(self, object_id: str) -> bool:
        """Whether the user is, through any nesting, in a privileged group."""
        user = self._user(object_id)
        return user.pk in self._protected_ids(self._objects())

    def close(self) -> None:
        """Nothing to release."""

    def sign_in(self, object_id: str, password: str) -> str:
        """Try a Windows sign-in, as the trial's outbox lets a visitor do.

        Returns "ok", "must_change", "locked", "disabled" or "wrong_password"; wrong
        passwords count towards the lockout threshold, like a real domain.
        """
        with transaction.atomic():
            user = DemoObject.objects.select_for_update().get(
                connection_id=self.connection_id, kind="user", object_id=object_id
            )
            if not user.enabled:
                return "disabled"
            if user.locked_at and user.locked_at >= timezone.now() - LOCKOUT_DURATION:
                return "locked"
            if not check_password(password, user.password_hash):
                user.failed_logins += 1
                if user.failed_logins >= POLICY.lockout_threshold:
                    user.locked_at = timezone.now()
                user.save(update_fields=["failed_logins", "locked_at"])
                return "locked" if user.locked_at else "wrong_password"
            user.failed_logins = 0
            user.save(update_fields=["failed_logins"])
            return "must_change" if user.must_change_password else "ok"


FIRST_NAMES = [
    "Ava", "Ben", "Chloe", "Daniel", "Emma", "Felix", "Grace", "Hugo", "Isla", "Jack",
    "Kira", "Leo", "Maya", "Noah", "Olive", "Priya", "Quinn", "Ravi", "Sofia", "Theo",
]
SURNAMES = ["Adams", "Brooks", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes",
            "Ito", "Jensen", "Khan", "Lopez", "Murphy", "Novak", "Okafor"]
# (OU path, how many users, groups they join)
DEMO_LAYOUT: list[tuple[tuple[str, ...], int, tuple[str, ...]]] = [
    (("Contoso", "Head Office"), 6, ("All Staff",)),
    (("Contoso", "Sales", "EMEA"), 9, ("All Staff", "Sales EMEA", "VPN Users")),
    (("Contoso", "Sales", "Americas"), 9, ("All Staff", "Sales Americas", "VPN Users")),
    (("Contoso", "Engineering", "Platform"), 10, ("All Staff", "Engineers", "VPN Users")),
    (("Contoso", "Engineering", "Apps"), 10, ("All Staff", "Engineers")),
    (("Contoso", "Finance"), 8, ("All Staff", "Finance")),
    (("Contoso", "IT"), 6, ("All Staff", "IT Support", "VPN Users")),
]


def demo_directory_seed(connection: Connection) -> int:
    """Fill an empty demo connection with a small company; returns the number of users.

    About 60 users in nested OUs and groups, one of them disabled, a few without
    an email address, and one admin who is protected only through a nested group.
    """
    if connection.demo_objects.exists():
        return connection.demo_objects.filter(kind="user").count()
    with transaction.atomic():
        def make(
            kind: str, name: str, parent: DemoObject | None = None, **extra: object
        ) -> DemoObject:
            return DemoObject.objects.create(
                connection=connection, kind=kind, name=name, parent=parent,
                object_id=str(uuid.uuid4()), **extra,
            )

        groups_ou = make("ou", "Groups", make("ou", "Contoso"))
        contoso = groups_ou.parent
        groups: dict[str, DemoObject] = {}
        for name in ["All Staff", "Sales", "Sales EMEA", "Sales Americas", "Engineers",
                     "Finance", "IT Support", "VPN Users", "IT Admins"]:
            groups[name] = make("group", name, groups_ou)
        groups["Domain Admins"] = make("group", "Domain Admins", groups_ou, privileged=True)
        groups["Sales"].members.add(groups["Sales EMEA"], groups["Sales Americas"])
        groups["Domain Admins"].members.add(groups["IT Admins"])

        ous: dict[tuple[str, ...], DemoObject] = {("Contoso",): contoso}  # type: ignore[dict-item]
        count = 0
        password = make_password(None)  # unusable until Blink sets one
        for path, size, group_names in DEMO_LAYOUT:
            for depth in range(2, len(path) + 1):
                if path[:depth] not in ous:
                    ous[path[:depth]] = make("ou", path[depth - 1], ous[path[: depth - 1]])
            for _ in range(size):
                first = FIRST_NAMES[count % len(FIRST_NAMES)]
                last = SURNAMES[(count * 7) % len(SURNAMES)]
                username = f"{first[0]}{last}{count}".lower()
                user = make(
                    "user", f"{first} {last}", ous[path], username=username, given_name=first,
                    surname=last,
                    email="" if count % 13 == 5 else f"{username}@{DOMAIN}",
                    mobile="",
                    enabled=count != 17,
                    password_hash=password,
                )
                for group_name in group_names:
                    groups[group_name].members.add(user)
                count += 1
        admin = make("user", "Dana Admin", ous[("Contoso", "IT")], username="dadmin",
                     given_name="Dana", surname="Admin", email=f"dadmin@{DOMAIN}",
                     password_hash=password)
        groups["IT Admins"].members.add(admin)
        return count + 1


SIGN_IN_SENTENCES = {
    "ok": "Signed in to Windows.",
    "must_change": "Signed in; Windows asks for a new password before going on, as it does "
                   "after a Blink reset.",
    "wrong_password": "Wrong password. After {threshold} wrong passwords the account locks.",
    "locked": "The account is locked. Blink notices within a poll and offers the user "
              "UNLOCK or RESET by text.",
    "disabled": "The account is disabled in the directory.",
    "unknown": "No demo directory user has that user name.",
}


def demo_sign_in(*, company_id: int, username: str, password: str) -> str:
    """Try a Windows sign-in against the company's demo directories; a sentence saying what
    Windows would answer. Wrong passwords count towards the demo domain's lockout."""
    user = DemoObject.objects.filter(
        connection__client__company_id=company_id, connection__kind=Connection.Kind.DEMO,
        kind=DemoObject.Kind.USER, username__iexact=username.strip(),
    ).first()
    if user is None:
        return SIGN_IN_SENTENCES["unknown"]
    outcome = DemoDirectory(user.connection_id).sign_in(user.object_id, password)
    return SIGN_IN_SENTENCES[outcome].format(threshold=POLICY.lockout_threshold)
