"""Reads on directory connections and snapshots."""

from __future__ import annotations

from directory.base import DirectoryError
from directory.models import Connection, Entry


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
