"""Sync directory snapshots now, in this process: one client's or every client's."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from directory.models import Connection
from directory.services import directory_sync


class Command(BaseCommand):
    help = "Refresh the directory snapshot of one client (by id or name) or of all clients."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("client", nargs="?", help="Client id or exact name; all if omitted.")

    def handle(self, *args: Any, **options: Any) -> None:
        connections = Connection.objects.select_related("client").filter(
            client__archived_at__isnull=True
        )
        wanted = options.get("client")
        if wanted:
            by = {"client_id": int(wanted)} if wanted.isdigit() else {"client__name": wanted}
            connections = connections.filter(**by)
            if not connections.exists():
                raise CommandError(f"No active client {wanted!r} with a directory connection.")
        failed = False
        for connection in connections:
            counts = directory_sync(connection_id=connection.pk, claimed=True)
            connection.refresh_from_db()
            if counts is None:
                failed = True
                self.stderr.write(f"{connection}: {connection.last_sync_message}")
            else:
                self.stdout.write(
                    f"{connection}: {counts['users']} users, {counts['groups']} groups, "
                    f"{counts['org_units']} OUs ({counts['added']} added, {counts['changed']} "
                    f"changed, {counts['removed']} removed)"
                )
        if failed:
            raise CommandError("Some directories could not be synced.")
