from __future__ import annotations

import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from blink.audit import SYSTEM
from blink.models import AuditEvent
from directory.backends import entra_for
from directory.models import Connection, Entry
from directory.services import connection_save
from tests.fakes.graph import ClientCertificate, generate_client_certificate

AD_FORM = {
    "url": "ldaps://dc1.corp.example:636", "bind_user": "svc-blink@corp.example",
    "bind_password": "Service-Pa55word", "base_dn": "DC=corp,DC=example", "scope_dns": "",
    "ca_pem": "", "queue": "directory", "monitor_lockouts": "on",
}


def a_ca_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "Corp CA")])
    now = timezone.now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now.replace(year=now.year + 1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def demo_connection(acme_client, django_capture_on_commit_callbacks, login, owner):
    with django_capture_on_commit_callbacks(execute=True):
        login(owner).post(f"/clients/{acme_client.pk}/directory/add/demo/")
    return Connection.objects.get(client=acme_client)


def test_directory_page_per_persona(persona, acme_client):
    name, browser = persona
    response = browser.get(f"/clients/{acme_client.pk}/directory/")
    if name == "outsider":
        assert response.status_code == 404
        return
    assert response.status_code == 200
    assert b"has no directory connected yet" in response.content
    assert (b"Add Active Directory" in response.content) == (name != "reader")


@pytest.mark.parametrize("action", ["test", "sync", "remove"])
def test_connection_actions_per_persona(persona, action, acme_client):
    connection = connection_save(client=acme_client, actor=SYSTEM, kind="demo", parameters={},
                                 secrets={})
    name, browser = persona
    response = browser.post(f"/clients/{acme_client.pk}/directory/{connection.pk}/{action}")
    expected = {"owner": 302, "admin": 302, "reader": 403, "outsider": 404}[name]
    assert response.status_code == expected
    assert Connection.objects.filter(pk=connection.pk).exists() == (
        action != "remove" or expected != 302
    )


def test_adding_the_demo_directory_syncs_it(demo_connection, login, owner, acme_client):
    assert demo_connection.last_sync_status == "ok"
    assert Entry.objects.filter(connection=demo_connection, kind="user").count() > 50
    page = login(owner).get(f"/clients/{acme_client.pk}/directory/").content.decode()
    assert "Demo" in page and "Succeeded" in page
    assert "users," in page


def test_test_connection_shows_the_sentence(demo_connection, login, owner, acme_client,
                                            django_capture_on_commit_callbacks):
    browser = login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        browser.post(f"/clients/{acme_client.pk}/directory/{demo_connection.pk}/test")
    page = browser.get(f"/clients/{acme_client.pk}/directory/").content.decode()
    assert "Connected to the demo directory" in page
    assert AuditEvent.objects.filter(action="connection.test").count() == 1


def test_a_queued_test_keeps_the_page_refreshing(login, owner, acme_client):
    connection = connection_save(client=acme_client, actor=SYSTEM, kind="demo", parameters={},
                                 secrets={})
    Connection.objects.filter(pk=connection.pk).update(last_test_status="queued")
    page = login(owner).get(f"/clients/{acme_client.pk}/directory/").content.decode()
    assert 'http-equiv="refresh"' in page and "Queued" in page


def test_add_active_directory_stores_the_password_encrypted_and_never_shows_it(
    login, owner, acme_client
):
    browser = login(owner)
    response = browser.post(f"/clients/{acme_client.pk}/directory/add/active_directory/",
                            {**AD_FORM, "ca_pem": a_ca_pem()})
    assert response.status_code == 302
    connection = Connection.objects.get(client=acme_client)
    assert connection.secrets() == {"bind_password": "Service-Pa55word"}
    assert connection.parameters["url"] == "ldaps://dc1.corp.example:636"
    assert "Service-Pa55word" not in connection.secrets_token
    edit = browser.get(f"/clients/{acme_client.pk}/directory/{connection.pk}/").content.decode()
    assert "Service-Pa55word" not in edit
    assert "Leave empty to keep it" in edit
    event = AuditEvent.objects.get(action="connection.create")
    assert "Service-Pa55word" not in str(event.detail)
    assert event.detail["secrets_changed"] == ["bind_password"]


def test_editing_without_a_password_keeps_the_stored_one(login, owner, acme_client):
    browser = login(owner)
    browser.post(f"/clients/{acme_client.pk}/directory/add/active_directory/", AD_FORM)
    connection = Connection.objects.get(client=acme_client)
    response = browser.post(f"/clients/{acme_client.pk}/directory/{connection.pk}/",
                            {**AD_FORM, "bind_password": "", "base_dn": "DC=new,DC=example"})
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.parameters["base_dn"] == "DC=new,DC=example"
    assert connection.secrets() == {"bind_password": "Service-Pa55word"}


@pytest.mark.parametrize("change", ["url", "ca_pem"])
def test_a_new_server_or_ca_needs_the_password_again(login, owner, acme_client, change):
    """Otherwise anyone who may edit the connection could point it at a server of their own
    and have Blink's next test send them the stored bind password."""
    browser = login(owner)
    browser.post(f"/clients/{acme_client.pk}/directory/add/active_directory/", AD_FORM)
    connection = Connection.objects.get(client=acme_client)
    edit = f"/clients/{acme_client.pk}/directory/{connection.pk}/"
    changed = {**AD_FORM, "bind_password": "",
               change: "ldaps://dc9.elsewhere.example:636" if change == "url" else a_ca_pem()}

    response = browser.post(edit, changed)

    assert response.status_code == 200
    assert "Enter the bind password again" in response.content.decode()
    connection.refresh_from_db()
    assert connection.parameters["url"] == AD_FORM["url"]
    assert connection.parameters["ca_pem"] == ""
    assert browser.post(edit, {**changed, "bind_password": "New-Pa55word"}).status_code == 302
    connection.refresh_from_db()
    assert connection.parameters[change] == changed[change].strip()
    assert connection.secrets() == {"bind_password": "New-Pa55word"}


def test_lockout_watching_can_be_turned_off_and_on(login, owner, acme_client):
    browser = login(owner)
    browser.post(f"/clients/{acme_client.pk}/directory/add/active_directory/", AD_FORM)
    connection = Connection.objects.get(client=acme_client)
    assert connection.monitor_lockouts
    edit = f"/clients/{acme_client.pk}/directory/{connection.pk}/"
    unticked = {k: v for k, v in AD_FORM.items() if k != "monitor_lockouts"}

    assert browser.post(edit, {**unticked, "bind_password": ""}).status_code == 302
    connection.refresh_from_db()
    assert not connection.monitor_lockouts
    page = browser.get(f"/clients/{acme_client.pk}/directory/").content.decode()
    assert re.search(r"Lockout monitoring</dt>\s*<dd>Off</dd>", page), page

    browser.post(edit, {**AD_FORM, "bind_password": ""})
    connection.refresh_from_db()
    assert connection.monitor_lockouts


@pytest.mark.parametrize(("change", "message"), [
    ({"url": "ldap://dc1.corp.example"}, "use ldaps:// or tick StartTLS"),
    ({"url": "http://dc1.corp.example"}, "Enter an ldaps:// or ldap:// URL"),
    ({"url": "ldaps://dc1:notaport"}, "port in this URL is not a number"),
    ({"bind_password": "   "}, "cannot be only spaces"),
    ({"bind_password": ""}, "This field is required"),
    ({"ca_pem": "not a certificate"}, "not a PEM certificate"),
    ({"queue": "dir client!"}, "letters, digits, dots"),
    ({"base_dn": "x" * 10_000}, "at most 512 characters"),
    ({"bind_user": "svc\x00"}, "Null characters are not allowed"),
])
def test_bad_active_directory_input_is_explained(login, owner, acme_client, change, message):
    response = login(owner).post(f"/clients/{acme_client.pk}/directory/add/active_directory/",
                                 {**AD_FORM, **change})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Connection.objects.exists()


def test_plain_ldap_with_start_tls_is_accepted(login, owner, acme_client):
    response = login(owner).post(f"/clients/{acme_client.pk}/directory/add/active_directory/",
                                 {**AD_FORM, "url": "ldap://dc1.corp.example",
                                  "start_tls": "on"})
    assert response.status_code == 302
    assert Connection.objects.get().parameters["start_tls"] is True


def test_entra_ids_must_be_guids(login, owner, acme_client):
    browser = login(owner)
    url = f"/clients/{acme_client.pk}/directory/add/entra/"
    bad = browser.post(url, {"tenant_id": "contoso", "client_id": "x", "client_secret": "s",
                             "queue": "directory"})
    assert b"Enter the ID as a GUID" in bad.content
    good = browser.post(url, {"tenant_id": "72F988BF-86F1-41AF-91AB-2D7CD011DB47",
                              "client_id": "00000000-0000-0000-0000-000000000001",
                              "client_secret": "secret-value", "queue": "directory"})
    assert good.status_code == 302
    assert Connection.objects.get().parameters["tenant_id"] == (
        "72f988bf-86f1-41af-91ab-2d7cd011db47"
    )


def test_another_companys_connection_is_not_found(login, outsider, acme_client):
    connection = connection_save(client=acme_client, actor=SYSTEM, kind="demo", parameters={},
                                 secrets={})
    browser = login(outsider)
    assert browser.get(f"/clients/{acme_client.pk}/directory/{connection.pk}/").status_code == 404
    assert browser.get(
        f"/clients/{acme_client.pk}/directory/add/active_directory/"
    ).status_code == 404


def test_unknown_kind_is_not_found(login, owner, acme_client):
    response = login(owner).get(f"/clients/{acme_client.pk}/directory/add/ldap-please/")
    assert response.status_code == 404


# ---------------------------------------------------------------------------- Entra certificates

ENTRA_FORM = {
    "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "client_id": "00000000-0000-0000-0000-000000000001",
    "client_secret": "", "queue": "directory", "monitor_lockouts": "on",
}


def upload(text: str | bytes, name: str = "blink.pem") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode() if isinstance(text, str) else text,
                              content_type="application/x-pem-file")


def key_lines(pair: ClientCertificate) -> list[str]:
    """The base64 lines of the private key: none may ever appear in a page or a log."""
    return pair.private_key_pem.splitlines()[1:-1]


def test_add_entra_with_a_certificate_stores_it_encrypted_and_never_shows_it(
    login, owner, acme_client, client_certificate_pair
):
    browser = login(owner)
    response = browser.post(f"/clients/{acme_client.pk}/directory/add/entra/",
                            {**ENTRA_FORM, "certificate": upload(client_certificate_pair.pem)})
    assert response.status_code == 302
    connection = Connection.objects.get(client=acme_client)
    assert connection.secrets() == {"certificate_pem": client_certificate_pair.pem}
    assert "PRIVATE KEY" not in connection.secrets_token
    settings = entra_for(connection).settings  # type: ignore[attr-defined]
    assert (settings.certificate_pem, settings.client_secret) == (
        client_certificate_pair.pem, "")
    edit = browser.get(f"/clients/{acme_client.pk}/directory/{connection.pk}/").content.decode()
    assert not any(line in edit for line in key_lines(client_certificate_pair))
    assert "Leave this and the certificate empty" in edit
    event = AuditEvent.objects.get(action="connection.create")
    assert event.detail["secrets_changed"] == ["certificate_pem"]
    assert "PRIVATE KEY" not in str(event.detail)


def test_editing_entra_with_empty_credentials_keeps_the_certificate(
    login, owner, acme_client, client_certificate_pair
):
    browser = login(owner)
    browser.post(f"/clients/{acme_client.pk}/directory/add/entra/",
                 {**ENTRA_FORM, "certificate": upload(client_certificate_pair.pem)})
    connection = Connection.objects.get(client=acme_client)
    response = browser.post(f"/clients/{acme_client.pk}/directory/{connection.pk}/",
                            {**ENTRA_FORM, "queue": "dir.acme"})
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.queue == "dir.acme"
    assert connection.secrets() == {"certificate_pem": client_certificate_pair.pem}


def test_switching_entra_between_a_certificate_and_a_secret(
    login, owner, acme_client, client_certificate_pair
):
    browser = login(owner)
    browser.post(f"/clients/{acme_client.pk}/directory/add/entra/",
                 {**ENTRA_FORM, "certificate": upload(client_certificate_pair.pem)})
    connection = Connection.objects.get(client=acme_client)
    edit_url = f"/clients/{acme_client.pk}/directory/{connection.pk}/"

    to_secret = browser.post(edit_url, {**ENTRA_FORM, "client_secret": "Xy8Q~new-secret"})
    assert to_secret.status_code == 302
    connection.refresh_from_db()
    settings = entra_for(connection).settings  # type: ignore[attr-defined]
    assert (settings.client_secret, settings.certificate_pem) == ("Xy8Q~new-secret", "")
    assert "certificate_pem" not in connection.secrets()
    update = AuditEvent.objects.get(action="connection.update").detail
    assert (update["secrets_changed"], update["secrets_removed"]) == (
        ["client_secret"], ["certificate_pem"])

    to_certificate = browser.post(edit_url, {
        **ENTRA_FORM, "certificate": upload(client_certificate_pair.pem)})
    assert to_certificate.status_code == 302
    connection.refresh_from_db()
    settings = entra_for(connection).settings  # type: ignore[attr-defined]
    assert (settings.client_secret, settings.certificate_pem) == (
        "", client_certificate_pair.pem)


@pytest.mark.parametrize("editing", [False, True])
def test_entra_takes_a_secret_or_a_certificate_not_both(
    login, owner, acme_client, client_certificate_pair, editing
):
    browser = login(owner)
    url = f"/clients/{acme_client.pk}/directory/add/entra/"
    if editing:
        browser.post(url, {**ENTRA_FORM, "client_secret": "Xy8Q~stored"})
        url = f"/clients/{acme_client.pk}/directory/{Connection.objects.get().pk}/"
    response = browser.post(url, {**ENTRA_FORM, "client_secret": "Xy8Q~typed",
                                  "certificate": upload(client_certificate_pair.pem)})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Give a client secret or a certificate, not both." in page
    assert not any(line in page for line in key_lines(client_certificate_pair))
    assert Connection.objects.count() == int(editing)
    if editing:
        assert Connection.objects.get().secrets() == {"client_secret": "Xy8Q~stored"}


def test_a_new_entra_connection_needs_a_credential(login, owner, acme_client):
    response = login(owner).post(f"/clients/{acme_client.pk}/directory/add/entra/", ENTRA_FORM)
    assert response.status_code == 200
    assert "client secret, or upload its certificate with the private key" in (
        response.content.decode())
    assert not Connection.objects.exists()


@pytest.mark.parametrize(("build", "message"), [
    (lambda pair: "just some text", "is not a PEM certificate"),
    (lambda pair: pair.certificate_pem, "comes without its private key"),
    (lambda pair: b"\x30\x82\x05\xff\xfe binary DER or PFX", "This file is not PEM text"),
    (lambda pair: pair.pem + "#" * (64 * 1024), "at most 64 kB"),
    (lambda pair: generate_client_certificate(elliptic=True).pem, "needs an RSA key"),
], ids=["text", "no-key", "binary", "too-large", "elliptic"])
def test_a_bad_entra_certificate_is_explained(
    login, owner, acme_client, client_certificate_pair, build, message
):
    response = login(owner).post(f"/clients/{acme_client.pk}/directory/add/entra/",
                                 {**ENTRA_FORM, "certificate": upload(
                                     build(client_certificate_pair))})
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page
    assert not any(line in page for line in key_lines(client_certificate_pair))
    assert not Connection.objects.exists()


def test_saving_a_connection_resumes_lockout_monitoring(login, owner, acme_client):
    browser = login(owner)
    browser.post(f"/clients/{acme_client.pk}/directory/add/active_directory/", AD_FORM)
    connection = Connection.objects.get(client=acme_client)
    Connection.objects.filter(pk=connection.pk).update(
        lockout_monitoring_unavailable="Lockout monitoring needs a licence.")
    assert "Unavailable: Lockout monitoring needs a licence." in browser.get(
        f"/clients/{acme_client.pk}/directory/").content.decode()
    browser.post(f"/clients/{acme_client.pk}/directory/{connection.pk}/",
                 {**AD_FORM, "bind_password": ""})
    connection.refresh_from_db()
    assert connection.lockout_monitoring_unavailable == ""
