from __future__ import annotations

import pytest

from blink.audit import SYSTEM
from directory.base import DirectoryError
from directory.models import Entry
from directory.selectors import password_connection
from directory.services import connection_save

ENTRA = {"tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
         "client_id": "00000000-0000-0000-0000-000000000001"}
AD = {"url": "ldaps://dc1.corp.example", "bind_user": "svc@corp.example",
      "base_dn": "DC=corp,DC=example"}


@pytest.fixture
def entra(acme_client):
    return connection_save(client=acme_client, actor=SYSTEM, kind="entra", parameters=ENTRA,
                           secrets={"client_secret": "x"})


def user(connection, *, synced: bool) -> Entry:
    return Entry.objects.create(connection=connection, kind="user", object_id=f"id-{synced}",
                                name="Ann Lee", on_premises_sync=synced)


def test_cloud_users_are_reset_in_entra(entra):
    assert password_connection(entry=user(entra, synced=False)) == entra


def test_synced_users_without_an_ad_connection_are_refused_with_the_reason(entra):
    with pytest.raises(DirectoryError, match="Add the client's Active Directory") as refused:
        password_connection(entry=user(entra, synced=True))
    assert refused.value.code == "on_premises" and refused.value.permanent


def test_synced_users_are_reset_in_the_clients_ad(entra, acme_client):
    ad = connection_save(client=acme_client, actor=SYSTEM, kind="active_directory",
                         parameters=AD, secrets={"bind_password": "x"})
    assert password_connection(entry=user(entra, synced=True)) == ad
