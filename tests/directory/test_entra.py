"""The Entra ID adapter, through the real msal and requests, against the local stand-in for
the Microsoft identity platform and Graph (tests/fakes/graph.py)."""

from __future__ import annotations

import base64
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from django.test import override_settings

from blink.audit import SYSTEM
from clients.models import Client
from directory import entra as entra_module
from directory.backends import directory_for
from directory.base import Directory, DirectoryError
from directory.entra import (
    LOCKOUT_UNAVAILABLE,
    MAX_THROTTLED_ATTEMPTS,
    EntraDirectory,
    EntraSettings,
)
from directory.services import connection_save
from tests.fakes.graph import (
    DIRECTORY_READERS,
    GLOBAL_ADMINISTRATOR,
    JWT_BEARER,
    USER_ADMINISTRATOR,
    ClientCertificate,
    FakeGraph,
    generate_ca,
    generate_client_certificate,
    pem,
    sign_client_assertion,
)
from tests.fixtures.proxy import Proxy

NEW_PASSWORD = "Tulip-Harbor-42"


@pytest.fixture
def settings(graph_server: FakeGraph) -> EntraSettings:
    return EntraSettings(
        tenant_id=graph_server.tenant_id,
        client_id=graph_server.client_id,
        client_secret=graph_server.client_secret,
        authority_host=graph_server.authority_host,
        graph_url=graph_server.graph_url,
        ca_bundle=graph_server.ca_bundle,
        timeout=5,
        max_retry_wait=5,
    )


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def entra(settings: EntraSettings, waits: list[float]) -> Iterator[EntraDirectory]:
    directory = EntraDirectory(settings)
    # Throttle waits are recorded rather than slept (one test below really sleeps).
    directory.sleep = waits.append
    yield directory
    directory.close()


@pytest.fixture
def make(settings: EntraSettings) -> Iterator[Callable[..., EntraDirectory]]:
    """Build an adapter with some settings changed; closed after the test."""
    built: list[EntraDirectory] = []

    def build(**changes: Any) -> EntraDirectory:
        directory = EntraDirectory(replace(settings, **changes))
        directory.sleep = lambda seconds: None
        built.append(directory)
        return directory

    yield build
    for directory in built:
        directory.close()


def error_of(call: object, *args: object, **kwargs: object) -> DirectoryError:
    with pytest.raises(DirectoryError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


# ---------------------------------------------------------------------------- shape


def test_it_is_a_directory_and_opens_nothing_until_used(
    graph_server: FakeGraph, settings: EntraSettings
) -> None:
    directory = EntraDirectory(settings)
    assert isinstance(directory, Directory)
    assert graph_server.requests == []


def test_settings_never_show_the_client_secret(settings: EntraSettings) -> None:
    assert settings.client_secret not in repr(settings)


def test_test_connection_names_the_tenant(graph_server: FakeGraph, entra: EntraDirectory) -> None:
    sentence = entra.test_connection()
    assert "Globex Corporation" in sentence
    assert graph_server.tenant_id in sentence


def test_sign_in_and_graph_go_through_the_configured_proxy(
    graph_server: FakeGraph, https_proxy: Proxy, acme_client: Client
) -> None:
    connection = connection_save(
        client=acme_client, actor=SYSTEM, kind="entra",
        parameters={"tenant_id": graph_server.tenant_id, "client_id": graph_server.client_id,
                    "authority_host": graph_server.authority_host,
                    "graph_url": graph_server.graph_url, "ca_bundle": graph_server.ca_bundle},
        secrets={"client_secret": graph_server.client_secret},
    )
    with override_settings(BLINK_HTTPS_PROXY=https_proxy.url):
        entra = directory_for(connection)
    try:
        assert graph_server.tenant_id in entra.test_connection()
    finally:
        entra.close()

    # The tenant's metadata, the token and Graph: one pooled connection, through the proxy.
    assert set(https_proxy.tunnels) == {f"127.0.0.1:{graph_server.port}"}
    assert isinstance(entra, EntraDirectory)
    assert https_proxy.url not in repr(entra.settings)  # a proxy URL may carry a password


def test_password_policy_is_entras_cloud_policy(entra: EntraDirectory) -> None:
    policy = entra.password_policy()
    assert (policy.min_length, policy.complexity, policy.max_length) == (8, True, 256)


# ---------------------------------------------------------------------------- snapshot


def test_snapshot_follows_next_links_through_every_page(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    seeded = graph_server.data.add_users(2500)
    jo = graph_server.data.add_user("jo@globex.example", display_name="Jo Bloggs",
                                     given_name="Jo", surname="Bloggs", mail="jo@globex.example",
                                     mobile="+44 7700 900123", enabled=False)
    synced = graph_server.data.add_user("sam@globex.example", synced=True)

    snapshot = entra.snapshot()

    assert snapshot.org_units == []
    by_id = {u.object_id: u for u in snapshot.users}
    assert set(by_id) == {u["id"] for u in seeded} | {jo["id"], synced["id"]}
    pages = graph_server.graph_requests("GET", "/v1.0/users")
    assert len(pages) == 3
    assert [p.query["$top"] for p in pages] == ["999"] * 3
    assert "$skiptoken" not in pages[0].query
    assert all("$skiptoken" in p.query for p in pages[1:])
    assert "onPremisesSyncEnabled" in pages[0].query["$select"]
    bloggs = by_id[jo["id"]]
    assert (bloggs.username, bloggs.upn, bloggs.display_name, bloggs.given_name,
            bloggs.surname, bloggs.email, bloggs.mobile, bloggs.enabled) == (
        "jo@globex.example", "jo@globex.example", "Jo Bloggs", "Jo", "Bloggs",
        "jo@globex.example", "+44 7700 900123", False)
    assert by_id[synced["id"]].on_premises_sync is True
    assert by_id[jo["id"]].on_premises_sync is False


# An AD objectGUID and the onPremisesImmutableId Entra Connect gives the user synced from it:
# the GUID's 16 bytes in AD's (little-endian) order, in base64.
AD_GUID = "00112233-4455-6677-8899-aabbccddeeff"
IMMUTABLE_ID = "MyIRAFVEd2aImaq7zN3u/w=="


def test_synced_users_carry_the_ad_object_they_were_synced_from(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    synced = graph_server.data.add_user("sam@globex.example", synced=True)
    synced["onPremisesImmutableId"] = IMMUTABLE_ID
    cloud = graph_server.data.add_user("jo@globex.example")

    by_id = {u.object_id: u for u in entra.snapshot().users}
    one = entra.get_user(synced["id"])

    assert by_id[synced["id"]].on_premises_id == AD_GUID
    assert by_id[cloud["id"]].on_premises_id == ""
    assert (one.on_premises_sync, one.on_premises_id) == (True, AD_GUID)
    for request in (graph_server.graph_requests("GET", "/v1.0/users")[0],
                    graph_server.graph_requests("GET", f"/v1.0/users/{synced['id']}")[0]):
        assert "onPremisesImmutableId" in request.query["$select"].split(",")


@pytest.mark.parametrize("immutable_id", [
    None,  # no source anchor given (Graph's null)
    "",
    "not base64 at all!",
    "RTEyMzQ1Njc=",  # an employee number as the source anchor: 8 bytes, not a GUID
    base64.b64encode(bytes(20)).decode(),  # 20 bytes
    42,
], ids=["missing", "empty", "not-base64", "too-short", "too-long", "not-text"])
def test_an_immutable_id_that_is_not_an_objectguid_maps_to_no_ad_object(
    graph_server: FakeGraph, entra: EntraDirectory, immutable_id: object
) -> None:
    synced = graph_server.data.add_user("sam@globex.example", synced=True)
    synced["onPremisesImmutableId"] = immutable_id

    [user] = entra.snapshot().users

    assert (user.on_premises_sync, user.on_premises_id) == (True, "")
    assert entra.get_user(synced["id"]).on_premises_id == ""


def test_the_stand_in_anchors_synced_users_to_the_ad_object_given(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    given = graph_server.data.add_user("sam@globex.example", synced=True, on_premises_id=AD_GUID)
    made_up = graph_server.data.add_user("kim@globex.example", synced=True)

    assert given["onPremisesImmutableId"] == IMMUTABLE_ID
    assert entra.get_user(given["id"]).on_premises_id == AD_GUID
    made_up_guid = entra.get_user(made_up["id"]).on_premises_id
    assert made_up_guid == str(uuid.UUID(made_up_guid))  # a GUID, in canonical form


def test_snapshot_resolves_nested_group_members_to_users(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    ann, bob, cy, dee = (graph_server.data.add_user(f"{n}@globex.example")["id"]
                         for n in ("ann", "bob", "cy", "dee"))
    inner = graph_server.data.add_group("Night shift", [cy])
    middle = graph_server.data.add_group("Support", [bob, inner["id"]])
    outer = graph_server.data.add_group("Everyone", [ann, middle["id"]],
                                        description="All staff")
    graph_server.data.add_group("Empty")

    groups = {g.name: g for g in entra.snapshot().groups}

    assert groups["Everyone"].member_ids == {ann, bob, cy}
    assert groups["Everyone"].description == "All staff"
    assert groups["Support"].member_ids == {bob, cy}
    assert groups["Night shift"].member_ids == {cy}
    assert groups["Empty"].member_ids == frozenset()
    assert dee not in groups["Everyone"].member_ids
    assert outer["id"] == groups["Everyone"].object_id


def test_snapshot_pages_large_groups(
    graph_server: FakeGraph, make: Callable[..., EntraDirectory]
) -> None:
    members = [u["id"] for u in graph_server.data.add_users(250)]
    big = graph_server.data.add_group("Big", members)
    directory = make(page_size=100)

    groups = directory.snapshot().groups

    assert groups[0].member_ids == set(members)
    assert len(graph_server.graph_requests(
        "GET", f"/v1.0/groups/{big['id']}/transitiveMembers")) == 3


def test_a_group_with_hidden_membership_does_not_stop_the_sync(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    """Listing the members of a hidden-membership group needs Member.Read.Hidden, which few
    apps hold: the rest of the directory is still read, and the admin is told why the group
    looks empty."""
    data = graph_server.data
    ann, bob = (data.add_user(f"{name}@globex.example")["id"] for name in ("ann", "bob"))
    data.add_group("Board", [ann], hidden_membership=True)
    data.add_group("Staff", [ann, bob])

    snapshot = entra.snapshot()

    assert {g.name: g.member_ids for g in snapshot.groups} == {
        "Board": frozenset(), "Staff": {ann, bob}}
    (note,) = snapshot.notes
    assert "1 group with hidden membership (Board)" in note
    assert "Member.Read.Hidden" in note
    graph_server.knobs.permissions.add("Member.Read.Hidden")
    snapshot = entra.snapshot()
    assert {g.name: g.member_ids for g in snapshot.groups}["Board"] == {ann}
    assert snapshot.notes == ()


def test_snapshot_flags_every_role_holder_without_a_query_per_user(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    data = graph_server.data
    data.add_users(30)
    direct = data.add_user("ga@globex.example")["id"]
    via_group = data.add_user("ua@globex.example")["id"]
    reader = data.add_user("reader@globex.example")["id"]
    admins = data.add_group("User admins", [via_group], role_assignable=True)
    data.assign_role(direct, GLOBAL_ADMINISTRATOR)
    data.assign_role(admins["id"], USER_ADMINISTRATOR)
    data.assign_role(reader, DIRECTORY_READERS)

    snapshot = entra.snapshot()

    # Any Entra role makes an administrator, as Entra's own password reset sees it.
    assert {u.object_id for u in snapshot.users if u.protected} == {direct, via_group, reader}
    # The role definitions once, then their assignments 15 at a time, whatever the users.
    assert len(graph_server.graph_requests(
        "GET", "/v1.0/roleManagement/directory/roleDefinitions")) == 1
    assert len(graph_server.graph_requests(
        "GET", "/v1.0/roleManagement/directory/roleAssignments")) == math.ceil(
        len(graph_server.data.role_definitions) / 15)


def test_a_custom_role_protects_its_holder_too(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    holder = graph_server.data.add_user("custom@globex.example")["id"]
    graph_server.data.assign_role(holder, str(uuid.uuid4()))  # the tenant's own role

    assert {u.object_id for u in entra.snapshot().users if u.protected} == {holder}
    assert entra.is_protected(holder) is True


def test_is_protected_follows_role_assignable_groups(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    data = graph_server.data
    direct = data.add_user("ga@globex.example")["id"]
    via_group = data.add_user("ua@globex.example")["id"]
    plain = data.add_user("plain@globex.example")["id"]
    admins = data.add_group("User admins", [via_group], role_assignable=True)
    data.add_group("Staff", [direct, via_group, plain])
    data.assign_role(direct, GLOBAL_ADMINISTRATOR)
    data.assign_role(admins["id"], USER_ADMINISTRATOR)

    assert entra.is_protected(direct) is True
    assert entra.is_protected(via_group) is True
    assert entra.is_protected(plain) is False
    data.assign_role(plain, DIRECTORY_READERS)  # a role that changes nothing is a role too
    assert entra.is_protected(plain) is True
    assert entra.get_user(via_group).protected is True


def test_pim_eligible_users_are_protected_like_role_holders(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    """Someone only eligible for a role can activate it whenever they like: a password
    texted for them would be a password for an administrator."""
    data = graph_server.data
    eligible = data.add_user("standby-ga@globex.example")["id"]
    via_group = data.add_user("standby-ua@globex.example")["id"]
    plain = data.add_user("plain@globex.example")["id"]
    standby = data.add_group("Standby admins", [via_group], role_assignable=True)
    data.make_eligible(eligible, GLOBAL_ADMINISTRATOR)
    data.make_eligible(standby["id"], USER_ADMINISTRATOR)

    assert {u.object_id for u in entra.snapshot().users if u.protected} == {eligible, via_group}
    assert entra.is_protected(eligible) is True
    assert entra.is_protected(via_group) is True
    assert entra.is_protected(plain) is False
    for admin in (eligible, via_group):
        error = error_of(entra.reset_password, admin, NEW_PASSWORD)
        assert (error.code, error.permanent) == ("protected", True)
    assert graph_server.graph_requests("PATCH") == []
    entra.reset_password(plain, NEW_PASSWORD)
    assert len(graph_server.graph_requests("PATCH")) == 1


def test_a_tenant_without_pim_has_nobody_eligible(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    """Without Entra ID P2 Graph refuses the PIM endpoints: there is no PIM, so that is
    not a reason to stop syncing or resetting."""
    graph_server.knobs.pim = False
    user = graph_server.data.add_user("jo@globex.example")["id"]

    assert [u.protected for u in entra.snapshot().users] == [False]
    entra.reset_password(user, NEW_PASSWORD)

    assert len(graph_server.graph_requests("PATCH")) == 1
    assert graph_server.graph_requests(
        "GET", "/v1.0/roleManagement/directory/roleEligibilitySchedules")


def test_nobody_is_reset_while_blink_cannot_read_pim_eligibilities(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    """Directory.Read.All reads role assignments but not PIM eligibilities: Blink says which
    permission is missing rather than reset someone who may be an administrator."""
    user = graph_server.data.add_user("jo@globex.example")["id"]
    graph_server.knobs.permissions.discard("RoleManagement.Read.Directory")

    for error in (error_of(entra.reset_password, user, NEW_PASSWORD), error_of(entra.snapshot)):
        assert (error.code, error.permanent) == ("insufficient_rights", True)
        assert "RoleManagement.Read.Directory" in error.message
        assert "PIM" in error.message
    assert graph_server.graph_requests("PATCH") == []


def test_get_user_of_an_unknown_id_is_not_found(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    error = error_of(entra.get_user, str(uuid.uuid4()))
    assert (error.code, error.permanent) == ("not_found", True)
    before = len(graph_server.requests)
    for bad in ["../groups", "x' or principalId eq 'y", f"urn:uuid:{uuid.uuid4()}"]:
        assert error_of(entra.get_user, bad).code == "not_found"
        assert error_of(entra.is_protected, bad).code == "not_found"
    assert len(graph_server.requests) == before


# ---------------------------------------------------------------------------- throttling, tokens


def test_throttled_request_waits_for_retry_after_then_succeeds(
    graph_server: FakeGraph, entra: EntraDirectory, waits: list[float]
) -> None:
    graph_server.data.add_users(5)
    graph_server.throttle(1, status=429, retry_after="1")

    assert len(entra.snapshot().users) == 5
    assert waits == [1.0]
    statuses = [r.status for r in graph_server.graph_requests("GET", "/v1.0/users")]
    assert statuses == [429, 200]


def test_service_unavailable_is_retried_after_a_real_wait(
    graph_server: FakeGraph, settings: EntraSettings
) -> None:
    graph_server.data.add_users(2)
    graph_server.throttle(1, status=503, retry_after="1")
    directory = EntraDirectory(settings)
    started = time.monotonic()

    assert len(directory.snapshot().users) == 2
    assert time.monotonic() - started >= 1
    directory.close()


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_read_that_meets_a_server_error_is_asked_again(
    graph_server: FakeGraph, entra: EntraDirectory, waits: list[float], status: int
) -> None:
    graph_server.data.add_users(3)
    graph_server.throttle(1, status=status, retry_after=None)

    assert len(entra.snapshot().users) == 3
    assert waits == [1.0]  # no Retry-After: backoff from 1 s
    assert [r.status for r in graph_server.graph_requests("GET", "/v1.0/users")] == [status, 200]


def test_a_password_write_that_meets_a_server_error_is_not_sent_again(
    graph_server: FakeGraph, entra: EntraDirectory, waits: list[float]
) -> None:
    """The write may have been done: the reset ends, temporarily failed, and Blink's retry
    of the whole reset sends the same sealed password."""
    user = graph_server.data.add_user("jo@globex.example")["id"]
    graph_server.knobs.patch_failures = [502]

    error = error_of(entra.reset_password, user, NEW_PASSWORD)

    assert (error.code, error.permanent) == ("unavailable", False)
    assert len(graph_server.graph_requests("PATCH")) == 1
    assert waits == []


def test_throttling_beyond_the_attempt_cap_is_a_temporary_error(
    graph_server: FakeGraph, entra: EntraDirectory, waits: list[float]
) -> None:
    graph_server.throttle(50, status=429, retry_after="0")

    error = error_of(entra.snapshot)

    assert (error.code, error.permanent) == ("throttled", False)
    assert "try again later" in error.message
    assert len(graph_server.graph_requests()) == MAX_THROTTLED_ATTEMPTS


def test_a_retry_after_longer_than_the_cap_gives_up_without_waiting(
    graph_server: FakeGraph, entra: EntraDirectory, waits: list[float]
) -> None:
    graph_server.throttle(1, status=429, retry_after="120")

    error = error_of(entra.snapshot)

    assert (error.code, error.permanent) == ("throttled", False)
    assert waits == []


def test_a_token_revoked_mid_snapshot_is_refreshed_once(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    graph_server.data.add_users(2500)
    graph_server.knobs.revoke_tokens_after = 1  # the first page succeeds, the second gets 401

    assert len(entra.snapshot().users) == 2500
    assert len(graph_server.token_requests()) == 2
    assert [r.status for r in graph_server.graph_requests("GET", "/v1.0/users")] == [
        200, 401, 200, 200]


def test_the_token_is_cached_between_calls(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    user = graph_server.data.add_user("jo@globex.example")["id"]
    entra.get_user(user)
    entra.get_user(user)
    assert len(graph_server.token_requests()) == 1


def test_adapters_built_per_task_share_one_sign_in(
    graph_server: FakeGraph, settings: EntraSettings
) -> None:
    """``directory_for`` builds an adapter for every reset and poll: the tenant's metadata
    and the token are fetched once per process, not once per task."""
    user = graph_server.data.add_user("jo@globex.example")["id"]

    for _ in range(3):
        EntraDirectory(settings).get_user(user)

    assert len(graph_server.token_requests()) == 1
    assert len([r for r in graph_server.requests if "openid-configuration" in r.path]) == 1


def test_changed_settings_replace_the_sign_in_they_share(
    graph_server: FakeGraph, settings: EntraSettings
) -> None:
    """A rotated secret or renewed certificate: the old sign-in (and the secret it holds)
    does not linger for the life of the process."""
    user = graph_server.data.add_user("jo@globex.example")["id"]
    EntraDirectory(settings).get_user(user)
    rotated = replace(settings, timeout=6)

    EntraDirectory(rotated).get_user(user)

    held = [key for key in entra_module._SIGN_INS if key[0] == os.getpid()]
    assert len(held) == 1
    assert entra_module._SIGN_INS[held[0]].settings == rotated
    assert len(graph_server.token_requests()) == 2


# ---------------------------------------------------------------------------- sign-in errors


def test_a_wrong_client_secret_is_a_sentence(graph_server: FakeGraph,
                                             make: Callable[..., EntraDirectory]) -> None:
    wrong = "not-the-secret-" + uuid.uuid4().hex
    error = error_of(make(client_secret=wrong).test_connection)
    assert (error.code, error.permanent) == ("bad_credentials", True)
    assert "client secret" in error.message
    assert wrong not in error.message
    assert graph_server.client_secret not in error.message


def test_an_unknown_client_id_is_a_sentence(make: Callable[..., EntraDirectory]) -> None:
    error = error_of(make(client_id=str(uuid.uuid4())).test_connection)
    assert (error.code, error.permanent) == ("bad_credentials", True)
    assert "Application (client) ID" in error.message


def test_an_unknown_tenant_is_a_sentence(make: Callable[..., EntraDirectory]) -> None:
    tenant = str(uuid.uuid4())
    error = error_of(make(tenant_id=tenant).test_connection)
    assert (error.code, error.permanent) == ("tenant_not_found", True)
    assert tenant in error.message


@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_sign_in_service_is_temporary(
    graph_server: FakeGraph, make: Callable[..., EntraDirectory], status: int
) -> None:
    graph_server.throttle_tokens(1, status=status)
    error = error_of(make().test_connection)
    assert (error.code, error.permanent) == ("unavailable", False)
    assert "try again later" in error.message


def test_an_unreachable_host_is_temporary(make: Callable[..., EntraDirectory]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = error_of(make(authority_host=f"https://127.0.0.1:{port}").test_connection)
    assert (error.code, error.permanent) == ("unreachable", False)
    assert f"127.0.0.1:{port}" in error.message


# ---------------------------------------------------------------------------- certificates


def test_settings_never_show_the_certificate(app_certificate: ClientCertificate) -> None:
    settings = EntraSettings(tenant_id="t", client_id="c", certificate_pem=app_certificate.pem)
    assert "PRIVATE KEY" not in repr(settings)
    assert app_certificate.certificate_pem not in repr(settings)


def test_a_certificate_signs_in_and_reads_the_directory(
    graph_server: FakeGraph,
    app_certificate: ClientCertificate,
    make: Callable[..., EntraDirectory],
) -> None:
    seeded = graph_server.data.add_users(3)
    directory = make(client_secret="", certificate_pem=app_certificate.pem)

    sentence = directory.test_connection()
    snapshot = directory.snapshot()

    assert f"with certificate {app_certificate.thumbprint}" in sentence
    assert {u.object_id for u in snapshot.users} == {u["id"] for u in seeded}
    # Signed the way the identity platform documents today, by the registered certificate.
    [assertion] = graph_server.assertions
    assert (assertion.algorithm, assertion.thumbprint_header) == ("PS256", "x5t#S256")
    assert assertion.thumbprint == app_certificate.thumbprint
    assert assertion.x5c_is_signer
    [token_request] = graph_server.token_requests()
    assert token_request.body["client_assertion_type"] == JWT_BEARER
    assert "client_secret" not in token_request.body


def test_the_certificate_is_found_among_others_in_the_file(
    graph_server: FakeGraph,
    app_certificate: ClientCertificate,
    make: Callable[..., EntraDirectory],
) -> None:
    _, issuer = generate_ca("Some issuing CA")
    # Key first, then an issuer certificate, then the app's own: the order openssl may write.
    text = app_certificate.private_key_pem + pem(issuer).decode() + app_certificate.certificate_pem

    make(client_secret="", certificate_pem=text).test_connection()

    [assertion] = graph_server.assertions
    assert assertion.thumbprint == app_certificate.thumbprint and assertion.x5c_is_signer


def test_an_unregistered_certificate_is_a_sentence(
    graph_server: FakeGraph,
    app_certificate: ClientCertificate,
    make: Callable[..., EntraDirectory],
) -> None:
    stranger = generate_client_certificate("Not on the app")

    error = error_of(make(client_secret="", certificate_pem=stranger.pem).test_connection)

    assert (error.code, error.permanent) == ("bad_credentials", True)
    assert f"did not accept the certificate {stranger.thumbprint}" in error.message
    assert "Certificates & secrets" in error.message
    assert "PRIVATE KEY" not in error.message
    assert graph_server.assertions == []
    [token_request] = graph_server.token_requests()
    assert token_request.status == 401


def _expired() -> str:
    now = datetime.now(UTC)
    return generate_client_certificate(not_before=now - timedelta(days=400),
                                       not_after=now - timedelta(days=1)).pem


def _passphrase_protected(pair: ClientCertificate) -> str:
    key = pair.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.BestAvailableEncryption(b"open sesame"))
    return pair.certificate_pem + key.decode()


@pytest.mark.parametrize(("build", "sentence"), [
    (lambda pair: "I am not a certificate", "is not a PEM certificate"),
    (lambda pair: pair.private_key_pem, "is not a PEM certificate"),
    (lambda pair: pair.certificate_pem, "comes without its private key"),
    (lambda pair: pair.pem + pair.private_key_pem, "more than one private key"),
    (lambda pair: pair.certificate_pem + "-----BEGIN PRIVATE KEY-----\nnope\n"
                                         "-----END PRIVATE KEY-----\n", "cannot be read"),
    (_passphrase_protected, "protected by a passphrase"),
    (lambda pair: generate_client_certificate(elliptic=True).pem, "needs an RSA key"),
    (lambda pair: generate_client_certificate(key_size=1024).pem, "has 1024 bits"),
    (lambda pair: pair.certificate_pem + generate_client_certificate().private_key_pem,
     "does not belong to the certificate"),
    (lambda pair: _expired(), "expired on"),
], ids=["garbage", "key-only", "certificate-only", "two-keys", "unreadable-key", "passphrase",
        "elliptic", "short-key", "someone-elses-key", "expired"])
def test_an_unusable_certificate_is_refused_before_any_call(
    graph_server: FakeGraph,
    app_certificate: ClientCertificate,
    make: Callable[..., EntraDirectory],
    build: Callable[[ClientCertificate], str],
    sentence: str,
) -> None:
    error = error_of(make(client_secret="", certificate_pem=build(app_certificate)).snapshot)

    assert (error.code, error.permanent) == ("config", True)
    assert sentence in error.message
    assert "PRIVATE KEY-----" not in error.message
    assert graph_server.requests == []


def test_a_worker_clock_that_is_off_is_a_sentence(
    graph_server: FakeGraph,
    app_certificate: ClientCertificate,
    make: Callable[..., EntraDirectory],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import msal.oauth2cli.assertion

    class HourBehind:
        @staticmethod
        def time() -> float:
            return time.time() - 3600

    # msal stamps the assertion's iat/exp from this clock.
    monkeypatch.setattr(msal.oauth2cli.assertion, "time", HourBehind)

    error = error_of(make(client_secret="", certificate_pem=app_certificate.pem).test_connection)

    assert (error.code, error.permanent) == ("clock", False)
    assert "clock" in error.message


@pytest.mark.parametrize(("secret", "with_certificate", "sentence"), [
    ("a-secret", True, "both a client secret and a certificate"),
    ("", False, "neither a client secret nor a certificate"),
])
def test_exactly_one_credential_is_needed(
    graph_server: FakeGraph,
    app_certificate: ClientCertificate,
    make: Callable[..., EntraDirectory],
    secret: str,
    with_certificate: bool,
    sentence: str,
) -> None:
    directory = make(client_secret=secret,
                     certificate_pem=app_certificate.pem if with_certificate else "")

    error = error_of(directory.test_connection)

    assert (error.code, error.permanent) == ("config", True)
    assert sentence in error.message
    assert graph_server.requests == []


def _fingerprint(pair: ClientCertificate, algorithm: hashes.HashAlgorithm) -> str:
    return base64.urlsafe_b64encode(pair.certificate.fingerprint(algorithm)).decode()


@pytest.mark.parametrize(("change", "outcome"), [
    ({}, 200),
    ({"algorithm": "RS256"}, 200),  # msal's older SHA-1 thumbprint route
    ({"claims": {"aud": "https://login.microsoftonline.com/common/oauth2/v2.0/token"}},
     "AADSTS700023"),
    ({"claims": {"iss": "someone-else"}}, "AADSTS700021"),
    ({"claims": {"sub": None}}, "AADSTS700021"),
    ({"claims": {"exp": 1_000_000_000}}, "AADSTS700024"),
    ({"claims": {"nbf": 4_000_000_000}}, "AADSTS700024"),
    ({"claims": {"jti": None}}, "AADSTS50027"),
    ({"header": {"x5t#S256": None}}, "AADSTS700027"),
    ({"header": {"alg": "HS256"}}, "AADSTS50027"),
    ({"stranger": True}, "The key was not found"),
    ({"stranger": True, "claim_registered": True}, "signature value did not match"),
], ids=["ps256", "rs256", "audience", "issuer", "subject", "expired", "not-yet", "no-jti",
        "no-thumbprint", "hmac", "unregistered", "forged"])
def test_the_stand_in_checks_every_part_of_a_client_assertion(
    graph_server: FakeGraph,
    app_certificate: ClientCertificate,
    change: dict[str, Any],
    outcome: int | str,
) -> None:
    endpoint = f"{graph_server.authority_host}/{graph_server.tenant_id}/oauth2/v2.0/token"
    signer = generate_client_certificate(key_size=2048) if change.get("stranger") \
        else app_certificate
    header = dict(change.get("header", {}))
    if change.get("claim_registered"):
        header["x5t#S256"] = _fingerprint(app_certificate, hashes.SHA256())
    assertion = sign_client_assertion(
        signer, audience=endpoint, client_id=graph_server.client_id,
        algorithm=change.get("algorithm", "PS256"), header=header,
        claims=change.get("claims"))

    response = requests.post(endpoint, verify=graph_server.ca_bundle, timeout=5, data={
        "grant_type": "client_credentials", "client_id": graph_server.client_id,
        "scope": "https://graph.microsoft.com/.default",
        "client_assertion_type": JWT_BEARER, "client_assertion": assertion,
    })

    if outcome == 200:
        assert response.status_code == 200, response.text
        assert response.json()["access_token"]
        return
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert str(outcome) in response.json()["error_description"]
    assert graph_server.assertions == []


# ---------------------------------------------------------------------------- TLS


def test_a_wrong_ca_bundle_is_a_certificate_sentence(
    make: Callable[..., EntraDirectory], tmp_path
) -> None:
    _, other_ca = generate_ca("Somebody else's CA")
    bundle = tmp_path / "other-ca.pem"
    bundle.write_bytes(pem(other_ca))

    error = error_of(make(ca_bundle=str(bundle)).test_connection)

    assert (error.code, error.permanent) == ("certificate", True)
    assert "certificate" in error.message


def test_the_environments_ca_bundle_variables_are_ignored(
    graph_server: FakeGraph, entra: EntraDirectory, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    bogus = str(tmp_path / "no-such-bundle.pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bogus)
    monkeypatch.setenv("CURL_CA_BUNDLE", bogus)
    # What the adapter avoids: a session that trusts the environment loses its own CA.
    trusting = requests.Session()
    trusting.verify = graph_server.ca_bundle
    with pytest.raises(OSError, match="invalid path"):
        trusting.get(f"{graph_server.graph_url}/organization", timeout=5)
    trusting.close()

    assert "Globex Corporation" in entra.test_connection()


def test_next_links_to_another_host_are_not_followed(
    graph_server: FakeGraph, make: Callable[..., EntraDirectory]
) -> None:
    graph_server.data.add_users(3)
    graph_server.knobs.next_link_origin = "https://attacker.example"
    directory = make(page_size=2)

    error = error_of(directory.snapshot)

    assert (error.code, error.permanent) == ("bad_response", True)
    assert len(graph_server.graph_requests("GET", "/v1.0/users")) == 1


# ---------------------------------------------------------------------------- reset_password


def test_reset_password_patches_the_password_profile(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    user = graph_server.data.add_user("jo@globex.example")["id"]

    entra.reset_password(user, NEW_PASSWORD)

    (patch,) = graph_server.graph_requests("PATCH")
    assert patch.path == f"/v1.0/users/{user}"
    assert patch.status == 204
    assert patch.body == {"passwordProfile": {"password": "<redacted>",
                                              "forceChangePasswordNextSignIn": True}}
    assert graph_server.data.passwords_set[user] == [
        {"password": NEW_PASSWORD, "forceChangePasswordNextSignIn": True}]


def test_reset_password_without_must_change(graph_server: FakeGraph,
                                            entra: EntraDirectory) -> None:
    user = graph_server.data.add_user("jo@globex.example")["id"]
    entra.reset_password(user, NEW_PASSWORD, must_change=False, unlock=True)
    assert graph_server.data.passwords_set[user][0]["forceChangePasswordNextSignIn"] is False


def test_a_synced_users_password_is_not_reset_in_entra(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    user = graph_server.data.add_user("sam@globex.example", synced=True)["id"]

    error = error_of(entra.reset_password, user, NEW_PASSWORD)

    assert (error.code, error.permanent) == ("on_premises", True)
    assert "on-premises Active Directory" in error.message
    assert "Active Directory connection" in error.message
    assert graph_server.graph_requests("PATCH") == []


def test_a_privileged_users_password_is_not_reset(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    user = graph_server.data.add_user("ga@globex.example", synced=True)["id"]
    graph_server.data.assign_role(user, GLOBAL_ADMINISTRATOR)

    error = error_of(entra.reset_password, user, NEW_PASSWORD)

    # Protected wins over on-premises, so a synced admin is never routed on to AD.
    assert (error.code, error.permanent) == ("protected", True)
    assert graph_server.graph_requests("PATCH") == []


def test_a_password_entra_rejects_is_a_policy_sentence(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    user = graph_server.data.add_user("jo@globex.example")["id"]
    graph_server.knobs.reject_passwords = True

    error = error_of(entra.reset_password, user, NEW_PASSWORD)

    assert (error.code, error.permanent) == ("policy", True)
    assert error.message.startswith("Entra ID refused the new password")
    assert NEW_PASSWORD not in error.message
    assert graph_server.data.passwords_set == {}


def test_a_weak_password_fails_entras_own_rules(graph_server: FakeGraph,
                                                entra: EntraDirectory) -> None:
    user = graph_server.data.add_user("jo@globex.example")["id"]
    assert error_of(entra.reset_password, user, "password").code == "policy"


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_an_empty_password_is_refused_before_any_call(
    graph_server: FakeGraph, entra: EntraDirectory, blank: str
) -> None:
    error = error_of(entra.reset_password, str(uuid.uuid4()), blank)
    assert error.code == "policy"
    assert graph_server.requests == []


def test_missing_password_permission_names_it(graph_server: FakeGraph,
                                              entra: EntraDirectory) -> None:
    user = graph_server.data.add_user("jo@globex.example")["id"]
    graph_server.knobs.permissions.discard("User-PasswordProfile.ReadWrite.All")

    error = error_of(entra.reset_password, user, NEW_PASSWORD)

    assert (error.code, error.permanent) == ("insufficient_rights", True)
    assert "User-PasswordProfile.ReadWrite.All" in error.message


def test_an_app_without_the_user_administrator_role_is_told_to_get_it(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    """Graph changes a password for an app only if the app also holds an Entra role: the
    permission alone is refused, and the admin must learn which role to assign."""
    user = graph_server.data.add_user("jo@globex.example")["id"]
    graph_server.knobs.app_roles = set()

    error = error_of(entra.reset_password, user, NEW_PASSWORD)

    assert (error.code, error.permanent) == ("insufficient_rights", True)
    assert "the Entra role User Administrator assigned to the app" in error.message
    graph_server.knobs.app_roles = {"User Administrator"}
    entra.reset_password(user, NEW_PASSWORD)


def test_missing_read_permission_names_it(graph_server: FakeGraph,
                                          entra: EntraDirectory) -> None:
    graph_server.knobs.permissions -= {"User.Read.All", "Directory.Read.All"}
    error = error_of(entra.snapshot)
    assert (error.code, error.permanent) == ("insufficient_rights", True)
    assert "Directory.Read.All" in error.message


# ---------------------------------------------------------------------------- lockouts


def test_locked_out_reads_recent_lockouts_in_one_query(
    graph_server: FakeGraph, make: Callable[..., EntraDirectory]
) -> None:
    data = graph_server.data
    now = datetime.now(UTC).replace(microsecond=0)
    ann, bob, cy, dee = (data.add_user(f"{n}@globex.example")["id"]
                         for n in ("ann", "bob", "cy", "dee"))
    data.add_sign_in(ann, at=now - timedelta(minutes=3))
    data.add_sign_in(ann, at=now - timedelta(minutes=1))
    data.add_sign_in(bob, at=now - timedelta(hours=2))  # long over
    data.add_sign_in(cy, error_code=50126, at=now)  # a wrong password, not a lockout
    data.add_sign_in(dee, at=now)  # locked, but not asked about
    for _ in range(5):  # enough noise to need more than one page
        data.add_sign_in(str(uuid.uuid4()), at=now)
    directory = make(page_size=2)

    locked = directory.locked_out([ann, bob, cy])

    assert locked == {ann: now - timedelta(minutes=1)}  # the latest refusal
    calls = graph_server.graph_requests("GET", "/v1.0/auditLogs/signIns")
    assert "status/errorCode eq 50053" in calls[0].query["$filter"]
    assert all("$skiptoken" in c.query for c in calls[1:])
    assert len(calls) == 4  # one query, paged: 7 lockouts at 2 a page


def test_locked_out_without_a_premium_licence_is_unavailable(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    user = graph_server.data.add_user("jo@globex.example")["id"]
    graph_server.knobs.premium = False

    error = error_of(entra.locked_out, [user])

    assert (error.code, error.permanent) == ("lockout_unavailable", True)
    assert error.message == LOCKOUT_UNAVAILABLE


def test_locked_out_without_the_audit_permission_names_it(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    graph_server.knobs.permissions.discard("AuditLog.Read.All")
    error = error_of(entra.locked_out, [str(uuid.uuid4())])
    assert error.code == "insufficient_rights"
    assert "AuditLog.Read.All" in error.message


def test_locked_out_of_nobody_asks_nothing(graph_server: FakeGraph,
                                          entra: EntraDirectory) -> None:
    assert entra.locked_out([]) == {}
    assert graph_server.requests == []


def test_unlock_is_not_offered_by_entra(graph_server: FakeGraph, entra: EntraDirectory) -> None:
    error = error_of(entra.unlock, str(uuid.uuid4()))
    assert (error.code, error.permanent) == ("not_supported", True)
    assert "password reset" in error.message
    assert graph_server.requests == []


# ---------------------------------------------------------------------------- hygiene


def test_logs_never_carry_secrets_tokens_or_passwords(
    graph_server: FakeGraph,
    make: Callable[..., EntraDirectory],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    user = graph_server.data.add_user("jo@globex.example")["id"]
    graph_server.knobs.revoke_tokens_after = 0
    directory = make()
    directory.reset_password(user, NEW_PASSWORD)
    graph_server.knobs.reject_passwords = True
    error_of(directory.reset_password, user, NEW_PASSWORD + "!")
    error_of(make(client_secret="Wrong~" + NEW_PASSWORD).test_connection)

    assert caplog.records
    for secret in [graph_server.client_secret, NEW_PASSWORD, *graph_server.tokens]:
        assert secret not in caplog.text


def test_logs_never_carry_the_private_key(
    graph_server: FakeGraph,
    app_certificate: ClientCertificate,
    make: Callable[..., EntraDirectory],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    make(client_secret="", certificate_pem=app_certificate.pem).test_connection()
    error_of(make(client_secret="",
                  certificate_pem=generate_client_certificate().pem).test_connection)

    assert app_certificate.thumbprint in caplog.text
    key_lines = app_certificate.private_key_pem.splitlines()[1:-1]
    assert not any(line in caplog.text for line in key_lines)
    assert "PRIVATE KEY" not in caplog.text


def test_close_then_use_again_opens_a_new_session(
    graph_server: FakeGraph, entra: EntraDirectory
) -> None:
    entra.test_connection()
    entra.close()
    assert "Globex Corporation" in entra.test_connection()
    assert len(graph_server.token_requests()) == 2
