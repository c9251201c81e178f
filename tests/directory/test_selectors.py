from __future__ import annotations

import pytest

from blink.audit import SYSTEM
from directory.base import DirectoryError
from directory.models import Entry
from directory.selectors import PasswordAccount, password_account, password_connection
from directory.services import connection_save

ENTRA = {"tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
         "client_id": "00000000-0000-0000-0000-000000000001"}
AD = {"url": "ldaps://dc1.corp.example", "bind_user": "svc@corp.example",
      "base_dn": "DC=corp,DC=example"}


@pytest.fixture
def entra(acme_client):
    return connection_save(client=acme_client, actor=SYSTEM, kind="entra", parameters=ENTRA,
                           secrets={"client_secret": "x"})


# Ann's Graph id, and the objectGUID of the AD account her Entra account is synced from.
GRAPH_ID = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
AD_GUID = "00112233-4455-6677-8899-aabbccddeeff"


@pytest.fixture
def ad(acme_client):
    return connection_save(client=acme_client, actor=SYSTEM, kind="active_directory",
                           parameters=AD, secrets={"bind_password": "x"})


def ann(entra, *, synced: bool, on_premises_id: str = "") -> Entry:
    return Entry.objects.create(connection=entra, kind="user", object_id=GRAPH_ID,
                                name="Ann Lee", on_premises_sync=synced,
                                on_premises_id=on_premises_id)


def test_cloud_users_are_reset_in_entra(entra):
    assert password_connection(entry=ann(entra, synced=False)) == entra


def test_synced_users_without_an_ad_connection_are_refused_with_the_reason(entra):
    with pytest.raises(DirectoryError, match="Add the client's Active Directory") as refused:
        password_connection(entry=ann(entra, synced=True))
    assert refused.value.code == "on_premises" and refused.value.permanent


def test_synced_users_are_reset_in_the_clients_ad(entra, ad):
    assert password_connection(entry=ann(entra, synced=True)) == ad


def test_a_synced_user_is_reset_as_the_ad_account_it_was_synced_from(entra, ad):
    ann(entra, synced=True, on_premises_id=AD_GUID)
    assert password_account(connection=entra, object_id=GRAPH_ID) == PasswordAccount(
        connection=ad, object_id=AD_GUID)


def test_a_synced_user_whose_ad_account_is_unknown_is_refused_never_tried_by_graph_id(
    entra, ad
):
    ann(entra, synced=True)  # Entra gave no objectGUID as its source anchor
    with pytest.raises(DirectoryError) as refused:
        password_account(connection=entra, object_id=GRAPH_ID)
    assert refused.value.permanent and refused.value.code == "on_premises_anchor"
    assert refused.value.message.startswith(
        "Ann Lee's password is kept in the client's on-premises Active Directory, but Entra "
        "ID does not say which Active Directory account it is synced from")
    assert "source anchor" in refused.value.message and "Sync" in refused.value.message


def test_a_synced_user_without_an_ad_connection_is_refused_for_that_first(entra):
    ann(entra, synced=True, on_premises_id=AD_GUID)
    with pytest.raises(DirectoryError, match="Add the client's Active Directory") as refused:
        password_account(connection=entra, object_id=GRAPH_ID)
    assert refused.value.code == "on_premises"


def test_cloud_and_ad_users_are_reset_as_themselves(entra, ad, django_assert_num_queries):
    ann(entra, synced=False, on_premises_id=AD_GUID)  # once synced; its password is Entra's now
    assert password_account(connection=entra, object_id=GRAPH_ID) == PasswordAccount(
        connection=entra, object_id=GRAPH_ID)
    with django_assert_num_queries(0):  # an AD user's password is in AD: nothing to read
        assert password_account(connection=ad, object_id=AD_GUID) == PasswordAccount(
            connection=ad, object_id=AD_GUID)
