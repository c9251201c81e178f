from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from blink.audit import SYSTEM
from directory.encryption import SecretsUnreadable
from directory.models import Connection
from directory.services import connection_save

AD = {"url": "ldaps://dc1.corp.example", "bind_user": "svc@corp.example",
      "base_dn": "DC=corp,DC=example"}


def test_secrets_are_stored_encrypted(acme_client):
    connection = connection_save(client=acme_client, actor=SYSTEM, kind="active_directory",
                                 parameters=AD, secrets={"bind_password": "Hunter2-secret"})
    stored = Connection.objects.values_list("secrets_token", flat=True).get(pk=connection.pk)
    assert "Hunter2" not in stored
    assert Connection.objects.get(pk=connection.pk).secrets() == {
        "bind_password": "Hunter2-secret"
    }


def test_rotation_re_encrypts_under_the_new_key(acme_client, settings):
    old = settings.BLINK_ENCRYPTION_KEYS[0]
    connection = connection_save(client=acme_client, actor=SYSTEM, kind="active_directory",
                                 parameters=AD, secrets={"bind_password": "s3cret-value"})
    new = Fernet.generate_key().decode()
    settings.BLINK_ENCRYPTION_KEYS = [new, old]
    out = StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert "1 connection" in out.getvalue()
    settings.BLINK_ENCRYPTION_KEYS = [new]
    connection.refresh_from_db()
    assert connection.secrets() == {"bind_password": "s3cret-value"}


def test_a_lost_key_is_reported_in_words(acme_client, settings):
    connection = connection_save(client=acme_client, actor=SYSTEM, kind="active_directory",
                                 parameters=AD, secrets={"bind_password": "s3cret-value"})
    settings.BLINK_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(SecretsUnreadable, match="Restore the old key"):
        connection.secrets()
