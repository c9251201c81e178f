"""A client with a real Active Directory (the Samba fixture) connected, tested and synced
from the console, with the snapshot stored in the test database."""

from __future__ import annotations

import pytest
from django.utils.html import escape

from directory.models import Connection, Entry, GroupMember

pytestmark = pytest.mark.integration


@pytest.fixture
def ad_form(samba_dc):
    return {
        "url": samba_dc.url, "bind_user": samba_dc.service_upn,
        "bind_password": samba_dc.service_password, "base_dn": samba_dc.base_dn,
        "scope_dns": "", "ca_pem": samba_dc.ca_pem, "queue": "directory",
        "monitor_lockouts": "on",
    }


def test_connect_test_and_sync_a_real_active_directory(
    samba_dc, ad_form, login, owner, acme_client, django_capture_on_commit_callbacks
):
    browser = login(owner)
    base = f"/clients/{acme_client.pk}/directory/"
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(f"{base}add/active_directory/", ad_form)
    assert response.status_code == 302
    connection = Connection.objects.get(client=acme_client)
    assert connection.last_test_status == "ok", connection.last_test_message

    with django_capture_on_commit_callbacks(execute=True):
        browser.post(f"{base}{connection.pk}/sync")
    connection.refresh_from_db()
    assert connection.last_sync_status == "ok", connection.last_sync_message
    assert connection.last_sync_counts["users"] > 1600

    users = Entry.objects.filter(connection=connection, kind="user")
    emea = users.get(username=samba_dc.users["emea"].username)
    assert emea.parent is not None and emea.parent.name == "EMEA"
    assert emea.parent.parent is not None and emea.parent.parent.name == "Sales"
    assert users.get(username=samba_dc.users["nested_admin"].username).protected
    assert not users.get(username=samba_dc.users["disabled"].username).enabled
    # A name full of LDAP metacharacters and a NUL arrives intact but storable.
    assert users.filter(name__contains=")(").exists()
    # Nested group membership: G-Sales holds G-Sales-EMEA's users.
    sales = Entry.objects.get(connection=connection, kind="group", name="G-Sales")
    assert GroupMember.objects.filter(group=sales, user=emea).exists()
    big = Entry.objects.get(connection=connection, kind="group", name="G-All-Staff")
    assert GroupMember.objects.filter(group=big).count() >= 1600

    page = browser.get(base).content.decode()
    assert "Succeeded" in page and "users," in page

    with django_capture_on_commit_callbacks(execute=True):
        browser.post(f"{base}{connection.pk}/sync")
    connection.refresh_from_db()
    assert connection.last_sync_counts["added"] == 0
    assert connection.last_sync_counts["changed"] == 0


def test_a_wrong_service_password_is_explained_on_the_page(
    samba_dc, samba_user, ad_form, login, owner, acme_client, django_capture_on_commit_callbacks
):
    # A throwaway account, so failed binds never lock the shared service account.
    account = samba_user(password="Right-Pa55word-1")
    browser = login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        browser.post(f"/clients/{acme_client.pk}/directory/add/active_directory/",
                     {**ad_form, "bind_user": account.upn, "bind_password": "Wrong-password-9"})
    connection = Connection.objects.get(client=acme_client)
    assert connection.last_test_status == "failed"
    page = browser.get(f"/clients/{acme_client.pk}/directory/").content.decode()
    assert "rejected the user name or password" in connection.last_test_message
    assert escape(connection.last_test_message) in page
    assert "Wrong-password-9" not in page
