"""A client on Entra ID (the Graph stand-in) connected, tested and synced through the
console's services, with on-premises-synced and privileged users told apart."""

from __future__ import annotations

import pytest

from blink.audit import SYSTEM
from directory.models import Connection, Entry, GroupMember
from directory.services import connection_save, connection_test_request, directory_sync_request

pytestmark = pytest.mark.integration

GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"


@pytest.fixture
def entra(graph_server, acme_client) -> Connection:
    return connection_save(
        client=acme_client, actor=SYSTEM, kind="entra",
        parameters={
            "tenant_id": graph_server.tenant_id, "client_id": graph_server.client_id,
            "authority_host": graph_server.authority_host, "graph_url": graph_server.graph_url,
            "ca_bundle": graph_server.ca_bundle,
        },
        secrets={"client_secret": graph_server.client_secret},
    )


def test_sync_an_entra_tenant_across_pages(graph_server, entra,
                                           django_capture_on_commit_callbacks):
    data = graph_server.data
    staff = data.add_users(1200)
    synced = data.add_user("hybrid@globex.example", display_name="Hank Hybrid", synced=True)
    boss = data.add_user("boss@globex.example", display_name="Bea Boss")
    data.assign_role(boss["id"], GLOBAL_ADMINISTRATOR)
    inner = data.add_group("Sales EMEA", [u["id"] for u in staff[:10]])
    data.add_group("Sales", [inner["id"], synced["id"]])

    with django_capture_on_commit_callbacks(execute=True):
        connection_test_request(connection=entra, actor=SYSTEM)
        directory_sync_request(connection=entra, actor=SYSTEM)
    entra.refresh_from_db()
    assert entra.last_test_status == "ok", entra.last_test_message
    assert entra.last_sync_status == "ok", entra.last_sync_message
    users = Entry.objects.filter(connection=entra, kind="user")
    assert users.count() == 1202
    assert users.get(upn="boss@globex.example").protected
    assert users.get(upn="hybrid@globex.example").on_premises_sync
    sales = Entry.objects.get(connection=entra, kind="group", name="Sales")
    assert GroupMember.objects.filter(group=sales).count() == 11
    # Paging: more than one page of users was fetched.
    assert sum(r.path.endswith("/users") and "$skiptoken" in r.query
               for r in graph_server.requests) >= 1


def test_a_sync_that_could_not_read_a_hidden_group_says_so(
    graph_server, entra, django_capture_on_commit_callbacks
):
    data = graph_server.data
    data.add_group("Board", [data.add_user("ann@globex.example")["id"]],
                   hidden_membership=True)

    with django_capture_on_commit_callbacks(execute=True):
        directory_sync_request(connection=entra, actor=SYSTEM)

    entra.refresh_from_db()
    assert entra.last_sync_status == "ok"
    assert "hidden membership (Board)" in entra.last_sync_message
    assert "Member.Read.Hidden" in entra.last_sync_message


def test_a_wrong_client_secret_is_explained(graph_server, entra, acme_client,
                                            django_capture_on_commit_callbacks):
    connection_save(client=acme_client, actor=SYSTEM, kind="entra",
                    parameters=entra.parameters, secrets={"client_secret": "not-it"},
                    connection=entra)
    with django_capture_on_commit_callbacks(execute=True):
        connection_test_request(connection=entra, actor=SYSTEM)
    entra.refresh_from_db()
    assert entra.last_test_status == "failed"
    assert "secret" in entra.last_test_message.lower()
    assert "not-it" not in entra.last_test_message


def test_sync_an_entra_tenant_signed_in_with_a_certificate(
    graph_server, app_certificate, acme_client, django_capture_on_commit_callbacks
):
    connection = connection_save(
        client=acme_client, actor=SYSTEM, kind="entra",
        parameters={
            "tenant_id": graph_server.tenant_id, "client_id": graph_server.client_id,
            "authority_host": graph_server.authority_host, "graph_url": graph_server.graph_url,
            "ca_bundle": graph_server.ca_bundle,
        },
        secrets={"certificate_pem": app_certificate.pem},
    )
    data = graph_server.data
    data.add_users(5)
    boss = data.add_user("boss@globex.example", display_name="Bea Boss")
    data.assign_role(boss["id"], GLOBAL_ADMINISTRATOR)

    with django_capture_on_commit_callbacks(execute=True):
        connection_test_request(connection=connection, actor=SYSTEM)
        directory_sync_request(connection=connection, actor=SYSTEM)
    connection.refresh_from_db()

    assert connection.last_test_status == "ok", connection.last_test_message
    assert app_certificate.thumbprint in connection.last_test_message
    assert connection.last_sync_status == "ok", connection.last_sync_message
    users = Entry.objects.filter(connection=connection, kind="user")
    assert users.count() == 6
    assert users.get(upn="boss@globex.example").protected
    # Every sign-in was a certificate-signed assertion the stand-in verified; no secret was sent.
    token_requests = graph_server.token_requests()
    assert token_requests and len(graph_server.assertions) == len(token_requests)
    assert all("client_secret" not in r.body for r in token_requests)
    assert {a.thumbprint for a in graph_server.assertions} == {app_certificate.thumbprint}
