"""Reads on directory connections and snapshots."""

from __future__ import annotations

from dataclasses import dataclass

from directory.base import DirectoryError
from directory.models import Connection, Entry


@dataclass(frozen=True)
class PasswordAccount:
    """Where a user's password is reset: the connection holding it, and the user's id
    there (which is not the id on the user's own connection for an Entra user synced
    from AD)."""

    connection: Connection
    object_id: str


def password_connection(*, entry: Entry) -> Connection:
    """The connection where ``entry``'s password lives, which is where it must be reset.

    An Entra user synced from on-premises AD has its password in AD (Entra only
    mirrors it), so it is reset through the client's AD connection.
    """
    connection = entry.connection
    if connection.kind != Connection.Kind.ENTRA or not entry.on_premises_sync:
        return connection
    active_directory = Connection.objects.filter(
        client_id=connection.client_id, kind=Connection.Kind.ACTIVE_DIRECTORY
    ).first()
    if active_directory is None:
        raise DirectoryError(
            f"{entry.name}'s password is kept in the client's on-premises Active Directory and "
            "synced to Entra ID, so Blink must reset it there. Add the client's Active "
            "Directory connection to reset this user.",
            permanent=True, code="on_premises",
        )
    return active_directory


def password_account(*, connection: Connection, object_id: str) -> PasswordAccount:
    """The account to reset or unlock for the user ``object_id`` of ``connection``.

    An Entra user synced from on-premises AD is reset in the client's AD (see
    ``password_connection``) as the AD account it is synced from, whose objectGUID the
    last sync read from Entra (``Entry.on_premises_id``). When Entra did not name one,
    this raises a permanent ``DirectoryError`` saying what to fix: the Graph id means
    nothing to AD. Any other user is reset on its own connection by its own id (an Entra
    user missing from the snapshot too: Entra then refuses a synced one itself).
    """
    own = PasswordAccount(connection=connection, object_id=object_id)
    if connection.kind != Connection.Kind.ENTRA:
        # Only Entra users keep their password elsewhere: no snapshot to read for the rest.
        return own
    entry = Entry.objects.filter(connection=connection, kind=Entry.Kind.USER,
                                 object_id=object_id).first()
    if entry is None or not entry.on_premises_sync:
        return own
    entry.connection = connection  # already in hand: password_connection need not read it
    active_directory = password_connection(entry=entry)
    if not entry.on_premises_id:
        raise DirectoryError(
            f"{entry.name}'s password is kept in the client's on-premises Active Directory, "
            "but Entra ID does not say which Active Directory account it is synced from (no "
            "objectGUID in its onPremisesImmutableId). Sync now on the client's Entra ID "
            "connection and try again; if that does not help, Entra Connect's source anchor "
            "is not objectGUID or ms-DS-ConsistencyGuid: reset it in Active Directory itself.",
            permanent=True, code="on_premises_anchor",
        )
    return PasswordAccount(connection=active_directory, object_id=entry.on_premises_id)
