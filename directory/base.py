"""The directory protocol: what Blink asks of Active Directory, Entra ID and the demo.

Backends speak in these plain dataclasses and raise only ``DirectoryError``, so
the rest of Blink never sees ldap3, msal or HTTP details.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable


class DirectoryError(Exception):
    """A directory operation failed.

    ``message`` is a sentence an admin can act on (never a secret); ``permanent``
    says whether trying again unchanged could succeed; ``code`` is a short
    machine-readable reason such as ``bad_credentials`` or ``policy``.
    """

    def __init__(self, message: str, *, permanent: bool, code: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.code = code


@dataclass(frozen=True)
class OrgUnit:
    object_id: str
    name: str
    dn: str
    parent_dn: str = ""


@dataclass(frozen=True)
class Group:
    object_id: str
    name: str
    dn: str = ""
    parent_dn: str = ""
    description: str = ""
    # Every user in the group, through nested groups too.
    member_ids: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class DirectoryUser:
    object_id: str
    username: str
    upn: str = ""
    display_name: str = ""
    given_name: str = ""
    surname: str = ""
    email: str = ""
    mobile: str = ""
    enabled: bool = True
    protected: bool = False
    # AD's "Password never expires": AD then ignores "must change at next logon", so Blink
    # refuses to reset such an account (the setup page and Blink Users say so beforehand).
    password_never_expires: bool = False
    dn: str = ""
    parent_dn: str = ""
    # Entra users whose password lives in on-premises AD.
    on_premises_sync: bool = False
    # The objectGUID (canonical UUID string) of the AD account such an Entra user is synced
    # from, where Entra names it (onPremisesImmutableId); "" when unknown or not synced.
    on_premises_id: str = ""


@dataclass(frozen=True)
class Snapshot:
    org_units: list[OrgUnit]
    groups: list[Group]
    users: list[DirectoryUser]
    # What the admin should know of a sync that still worked (what could not be read).
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PasswordPolicy:
    """What a new password must satisfy, and how the directory locks accounts."""

    min_length: int
    complexity: bool
    history_length: int = 0
    max_length: int = 256
    lockout_threshold: int = 0
    # None: a locked account stays locked until someone unlocks it.
    lockout_duration: timedelta | None = None


@runtime_checkable
class Directory(Protocol):
    """One client's directory, as Blink uses it."""

    # Whether ``locked_out`` gives a lockout's own start (AD's lockoutTime), so that another
    # start means another lockout. Entra's is the first refusal its sign-in log still holds.
    lockout_start_exact: bool
    # Whether ``unlock`` can clear a lockout (Entra's smart lockout only ends by itself or
    # with a new password).
    unlocks: bool

    def test_connection(self) -> str:
        """Bind and read the root; return a sentence saying what was reached."""
        ...

    def snapshot(self) -> Snapshot:
        """Every OU, group (members resolved through nesting) and user in scope."""
        ...

    def get_user(self, object_id: str) -> DirectoryUser:
        """One user by stable id; ``DirectoryError(code="not_found")`` if absent."""
        ...

    def password_policy(self, object_id: str | None = None) -> PasswordPolicy:
        """The policy a new password must meet, for this user where policies differ."""
        ...

    def reset_password(
        self, object_id: str, new_password: str, *, must_change: bool = True, unlock: bool = False
    ) -> None:
        """Set a new password in one directory write; optionally require a change at logon
        and clear a lockout."""
        ...

    def unlock(self, object_id: str) -> None:
        """Clear the account's lockout without touching its password."""
        ...

    def locked_out(self, object_ids: Iterable[str]) -> dict[str, datetime]:
        """Which of these users are locked now, with when the lockout began.

        One query for the whole directory, never one per user.
        """
        ...

    def is_protected(self, object_id: str) -> bool:
        """Whether the account is privileged (Blink refuses those by default)."""
        ...

    def close(self) -> None:
        """Release connections held for this directory."""
        ...
