"""Re-encrypt every stored connection secret with the first key in BLINK_ENCRYPTION_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from directory.encryption import secrets_rotate
from directory.models import Connection


class Command(BaseCommand):
    help = ("Re-encrypt stored secrets with the first key of BLINK_ENCRYPTION_KEYS. Run after "
            "putting a new key first; then the old keys can be removed.")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        count = 0
        for connection in Connection.objects.select_for_update().exclude(secrets_token=""):
            connection.secrets_token = secrets_rotate(connection.secrets_token)
            connection.save(update_fields=["secrets_token"])
            count += 1
        self.stdout.write(f"Re-encrypted the secrets of {count} connection(s).")
