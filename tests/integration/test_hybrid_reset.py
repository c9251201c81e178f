"""A hybrid client: users synced from its Active Directory (the Samba DC fixture) to its Entra
ID tenant (the Graph stand-in). An Entra Blink user synced from AD has its password in AD, so
Blink resets and unlocks the AD account it was synced from: the one whose objectGUID Entra
gives as the user's onPremisesImmutableId, never the Graph id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from blink.audit import SYSTEM, Actor
from blink.models import BlinkUser, ResetRequest
from blink.resets import ResetRefused, reset_request_create
from directory.models import Connection, Entry
from directory.services import connection_save, directory_sync
from sms.backends.locmem import SentSms
from tests.conftest import password_in
from tests.fakes.graph import FakeGraph
from tests.fixtures.samba import SambaDC, SeededUser

pytestmark = pytest.mark.integration

PHONE = "+14155550166"
ADMIN = Actor(label="olivia", ip="127.0.0.1")


@pytest.fixture
def entra(graph_server: FakeGraph, samba_connection: Connection) -> Connection:
    """The Entra ID connection of the client whose AD is ``samba_connection``."""
    return connection_save(
        client=samba_connection.client, actor=SYSTEM, kind="entra",
        parameters={
            "tenant_id": graph_server.tenant_id, "client_id": graph_server.client_id,
            "authority_host": graph_server.authority_host, "graph_url": graph_server.graph_url,
            "ca_bundle": graph_server.ca_bundle,
        },
        secrets={"client_secret": graph_server.client_secret},
    )


def synced_blink_user(entra: Connection, graph_user: dict[str, Any]) -> BlinkUser:
    """The Entra user ``graph_user`` as an Active Blink user, after a sync of the tenant."""
    assert directory_sync(connection_id=entra.pk, claimed=True) is not None
    entry = Entry.objects.get(connection=entra, kind="user", object_id=graph_user["id"])
    assert entry.on_premises_sync
    return BlinkUser.objects.create(
        client=entra.client, connection=entra, object_id=entry.object_id,
        username=entry.username, display_name=entry.name, phone=PHONE,
        status=BlinkUser.Status.ACTIVE,
    )


def request_run(blink_user: BlinkUser, captured: Callable[..., Any],
                kind: str = ResetRequest.Kind.RESET) -> ResetRequest:
    """Ask from the console and let the (eager) task run once the request is committed."""
    with captured(execute=True):
        request = reset_request_create(blink_user=blink_user, actor=ADMIN, channel="console",
                                       kind=kind)
    request.refresh_from_db()
    return request


def test_an_entra_user_synced_from_ad_is_reset_in_ad(
    samba_dc: SambaDC, samba_user: Callable[..., SeededUser], entra: Connection,
    graph_server: FakeGraph, sms_outbox: list[SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    person = samba_user()
    graph_user = graph_server.data.add_user(person.upn, display_name="Hank Hybrid",
                                            synced=True, on_premises_id=person.object_id)
    blink_user = synced_blink_user(entra, graph_user)
    assert blink_user.object_id != person.object_id

    request = request_run(blink_user, django_capture_on_commit_callbacks)

    assert (request.status, request.reason) == (ResetRequest.Status.SENT, "")
    [sms] = sms_outbox
    assert sms["to"] == PHONE
    ok, message = samba_dc.try_bind(person.upn, password_in(sms["body"]))
    assert not ok and "data 773" in message, message  # AD makes them change it
    ok, message = samba_dc.try_bind(person.upn, person.password)
    assert not ok and "data 52e" in message, message  # the old password is gone
    assert graph_server.graph_requests("PATCH") == []  # nothing was written to Entra


def test_an_entra_user_synced_from_ad_is_unlocked_in_ad(
    samba_dc: SambaDC, samba_user: Callable[..., SeededUser], entra: Connection,
    graph_server: FakeGraph, sms_outbox: list[SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    person = samba_user()
    graph_user = graph_server.data.add_user(person.upn, synced=True,
                                            on_premises_id=person.object_id)
    blink_user = synced_blink_user(entra, graph_user)
    samba_dc.lock_out(person.upn)
    ok, message = samba_dc.try_bind(person.upn, person.password)
    assert not ok and "data 775" in message, message  # locked

    request = request_run(blink_user, django_capture_on_commit_callbacks,
                          kind=ResetRequest.Kind.UNLOCK)

    assert (request.status, request.reason) == (ResetRequest.Status.SENT, "")
    assert samba_dc.try_bind(person.upn, person.password)[0]
    [sms] = sms_outbox
    assert "is unlocked. Your password has not changed." in sms["body"]


def test_a_user_whose_ad_account_entra_does_not_name_is_refused_until_a_sync_names_it(
    samba_dc: SambaDC, samba_user: Callable[..., SeededUser], entra: Connection,
    graph_server: FakeGraph, sms_outbox: list[SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    person = samba_user()
    graph_user = graph_server.data.add_user(person.upn, display_name="Hank Hybrid",
                                            synced=True)
    graph_user["onPremisesImmutableId"] = None  # no objectGUID given as the source anchor
    blink_user = synced_blink_user(entra, graph_user)

    with pytest.raises(ResetRefused) as refused:
        request_run(blink_user, django_capture_on_commit_callbacks)

    assert refused.value.message.startswith(
        "Hank Hybrid's password is kept in the client's on-premises Active Directory, but "
        "Entra ID does not say which Active Directory account it is synced from")
    assert not ResetRequest.objects.exists() and sms_outbox == []
    assert samba_dc.try_bind(person.upn, person.password)[0]  # AD was not touched

    # Entra Connect now anchors the user on its objectGUID: the next sync records it.
    graph_server.data.add_user(person.upn, synced=True, on_premises_id=person.object_id,
                               object_id=graph_user["id"])
    assert directory_sync(connection_id=entra.pk, claimed=True) is not None
    request = request_run(blink_user, django_capture_on_commit_callbacks)

    assert (request.status, request.reason) == (ResetRequest.Status.SENT, "")
    ok, message = samba_dc.try_bind(person.upn, password_in(sms_outbox[-1]["body"]))
    assert not ok and "data 773" in message, message


def test_a_run_whose_ad_account_is_no_longer_known_fails_with_the_reason(
    samba_dc: SambaDC, samba_user: Callable[..., SeededUser], entra: Connection,
    graph_server: FakeGraph, sms_outbox: list[SentSms],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """Queued while the anchor was known; a sync in between lost it: the run must not
    try the Graph id against AD."""
    person = samba_user()
    graph_user = graph_server.data.add_user(person.upn, display_name="Hank Hybrid",
                                            synced=True, on_premises_id=person.object_id)
    blink_user = synced_blink_user(entra, graph_user)
    with django_capture_on_commit_callbacks() as queued:
        request = reset_request_create(blink_user=blink_user, actor=ADMIN, channel="console")
    graph_user["onPremisesImmutableId"] = "RTEyMzQ1Njc="  # an employee number now
    assert directory_sync(connection_id=entra.pk, claimed=True) is not None

    with django_capture_on_commit_callbacks(execute=True):
        for callback in queued:
            callback()

    request.refresh_from_db()
    assert request.status == ResetRequest.Status.FAILED
    assert request.reason.startswith("Hank Hybrid's password is kept in the client's "
                                     "on-premises Active Directory, but Entra ID does not say")
    [sms] = sms_outbox
    assert sms["body"].startswith("Blink could not reset your password just now.")
    assert samba_dc.try_bind(person.upn, person.password)[0]  # AD was not touched
