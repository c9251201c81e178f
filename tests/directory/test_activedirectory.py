"""The Active Directory adapter against a real Samba AD DC (tests/fixtures/samba.py)."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import ldap3
import pytest

from directory import activedirectory
from directory.activedirectory import ActiveDirectory
from directory.base import Directory, DirectoryError, Snapshot
from tests.fixtures.samba import (
    DOMAIN_HISTORY,
    DOMAIN_MIN_LENGTH,
    LARGE_GROUP_SIZE,
    LOCKOUT_DURATION,
    LOCKOUT_THRESHOLD,
    PSO_HISTORY,
    PSO_LOCKOUT_DURATION,
    PSO_LOCKOUT_THRESHOLD,
    PSO_MIN_LENGTH,
    SambaDC,
    SeededUser,
    ca_pem_fresh,
    strong_password,
)
from tests.fixtures.samba import _run as samba_run

pytestmark = [
    pytest.mark.integration,
    # ldap3 checks certificate names with ssl.match_hostname, deprecated since Python 3.7.
    pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning"),
]

UNREACHABLE = "ldaps://127.0.0.1:1"
MakeUser = Callable[..., SeededUser]


@dataclass
class SearchLog:
    """Every ldap3 search the adapter made while the log was recording."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> Callable[..., Any]:
        original = ldap3.Connection.search

        def search(connection: ldap3.Connection, search_base: str, search_filter: str,
                   *args: Any, **kwargs: Any) -> Any:
            self.calls.append({"base": search_base, "filter": search_filter,
                               "attributes": kwargs.get("attributes")})
            return original(connection, search_base, search_filter, *args, **kwargs)

        return search


@pytest.fixture
def searches(monkeypatch: pytest.MonkeyPatch) -> SearchLog:
    log = SearchLog()
    monkeypatch.setattr(ldap3.Connection, "search", log.record())
    return log


@pytest.fixture
def ad(samba_dc: SambaDC) -> Iterator[ActiveDirectory]:
    """The adapter as Blink's delegated service account, over the whole domain."""
    adapter = ActiveDirectory(samba_dc.ad_settings())
    yield adapter
    adapter.close()


@pytest.fixture
def acme(samba_dc: SambaDC) -> Iterator[ActiveDirectory]:
    """The adapter limited to OU=Acme, as an MSP would set it up for that client."""
    adapter = ActiveDirectory(samba_dc.ad_settings(scope_dns=(samba_dc.ous["Acme"],)))
    yield adapter
    adapter.close()


@pytest.fixture(scope="module")
def acme_snapshot(samba_dc: SambaDC) -> tuple[Snapshot, list[dict[str, Any]]]:
    """One snapshot of OU=Acme, with the searches it took."""
    log = SearchLog()
    adapter = ActiveDirectory(samba_dc.ad_settings(scope_dns=(samba_dc.ous["Acme"],)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ldap3.Connection, "search", log.record())
        snapshot = adapter.snapshot()
    adapter.close()
    return snapshot, log.calls


def _error(call: Callable[[], object]) -> DirectoryError:
    with pytest.raises(DirectoryError) as caught:
        call()
    return caught.value


def _lock(samba_dc: SambaDC, user: SeededUser, attempts: int = LOCKOUT_THRESHOLD) -> None:
    samba_dc.lock_out(user.upn, attempts)
    ok, message = samba_dc.try_bind(user.upn, user.password)
    assert not ok and "data 775" in message, message


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the adapter opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


# --- connecting ---------------------------------------------------------------------------


def test_the_adapter_is_a_directory(ad: ActiveDirectory) -> None:
    assert isinstance(ad, Directory)


def test_connection_reports_the_server_and_base(ad: ActiveDirectory, samba_dc: SambaDC) -> None:
    sentence = ad.test_connection()

    assert sentence.startswith("Connected to dc1.blink.test over LDAPS as svc-blink@blink.test")
    assert samba_dc.base_dn in sentence


def test_starttls_on_389_works(samba_dc: SambaDC) -> None:
    adapter = ActiveDirectory(samba_dc.ad_settings(url=samba_dc.starttls_url, start_tls=True))
    try:
        assert "over LDAP with StartTLS" in adapter.test_connection()
        assert adapter.get_user(samba_dc.users["sales"].object_id).username == "ava.sales"
    finally:
        adapter.close()


def test_a_certificate_name_is_checked_too(samba_dc: SambaDC) -> None:
    adapter = ActiveDirectory(samba_dc.ad_settings(url="ldaps://localhost:636"))
    try:
        assert "Connected" in adapter.test_connection()
    finally:
        adapter.close()


def test_a_missing_scope_ou_is_named(samba_dc: SambaDC) -> None:
    missing = f"OU=Nowhere,{samba_dc.base_dn}"
    adapter = ActiveDirectory(samba_dc.ad_settings(scope_dns=(missing,)))
    try:
        error = _error(adapter.test_connection)
    finally:
        adapter.close()
    assert error.code == "not_found" and missing in error.message


def test_wrong_bind_password_is_a_bad_credentials_sentence(
    samba_dc: SambaDC, samba_user: MakeUser, caplog: pytest.LogCaptureFixture
) -> None:
    # A throwaway account: failed binds count towards the service account's lockout.
    account = samba_user()
    wrong = "Wrong-Passw0rd-zebra!"
    adapter = ActiveDirectory(samba_dc.ad_settings(bind_user=account.upn, bind_password=wrong))

    with caplog.at_level(logging.DEBUG):
        error = _error(adapter.test_connection)

    assert error.code == "bad_credentials" and error.permanent
    assert account.upn in error.message and "user name or password" in error.message
    assert wrong not in error.message and wrong not in caplog.text


@pytest.mark.parametrize("state", ["must_change", "disabled", "locked"])
def test_service_account_states_are_named(
    samba_dc: SambaDC, samba_user: MakeUser, state: str
) -> None:
    account = samba_user()
    admin = samba_dc.admin_connection()
    try:
        if state == "must_change":
            admin.modify(account.dn, {"pwdLastSet": [(ldap3.MODIFY_REPLACE, ["0"])]})
        elif state == "disabled":
            admin.modify(account.dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, ["514"])]})
    finally:
        admin.unbind()
    if state == "locked":
        _lock(samba_dc, account)
    adapter = ActiveDirectory(samba_dc.ad_settings(bind_user=account.upn,
                                                   bind_password=account.password))

    error = _error(adapter.test_connection)

    assert error.code == state
    assert error.permanent is (state != "locked")
    assert account.upn in error.message


def test_unreachable_server_is_not_permanent(samba_dc: SambaDC) -> None:
    error = _error(ActiveDirectory(samba_dc.ad_settings(url=UNREACHABLE)).test_connection)

    assert error.code == "unreachable" and error.permanent is False
    assert "127.0.0.1:1" in error.message


def test_an_untrusted_certificate_is_refused(samba_dc: SambaDC) -> None:
    adapter = ActiveDirectory(samba_dc.ad_settings(ca_pem=ca_pem_fresh()))

    error = _error(adapter.test_connection)

    assert error.code == "certificate" and error.permanent
    assert ("the CA certificate configured for this connection does not match the server's "
            "certificate") in error.message.lower().replace("the ca", "the CA")


def test_an_untrusted_certificate_is_refused_over_starttls_too(samba_dc: SambaDC) -> None:
    adapter = ActiveDirectory(samba_dc.ad_settings(url=samba_dc.starttls_url, start_tls=True,
                                                   ca_pem=ca_pem_fresh()))

    error = _error(adapter.test_connection)

    assert error.code == "certificate" and "does not match" in error.message


def test_a_certificate_for_another_name_is_refused(
    samba_dc: SambaDC, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A name that reaches the DC but is not in its certificate.
    original = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        return original("127.0.0.1" if host == "dc.elsewhere.example" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    adapter = ActiveDirectory(samba_dc.ad_settings(url="ldaps://dc.elsewhere.example:636"))

    error = _error(adapter.test_connection)

    assert error.code == "certificate" and error.permanent
    assert "not issued for dc.elsewhere.example" in error.message


def test_a_ca_that_is_not_pem_is_refused_before_connecting(
    samba_dc: SambaDC, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_network(monkeypatch)
    adapter = ActiveDirectory(samba_dc.ad_settings(ca_pem="not a certificate"))
    error = _error(lambda: adapter.unlock(str(uuid.uuid4())))
    assert error.code == "config" and "PEM" in error.message


def test_plain_ldap_without_starttls_is_refused_before_connecting(
    samba_dc: SambaDC, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_network(monkeypatch)
    adapter = ActiveDirectory(samba_dc.ad_settings(url="ldap://127.0.0.1:389"))

    error = _error(adapter.test_connection)

    assert error.code == "tls_required" and error.permanent
    assert "will not set passwords" in error.message


@pytest.mark.parametrize("password", ["", " ", "\t \n"])
def test_empty_or_blank_bind_password_is_refused_before_any_bind(
    samba_dc: SambaDC, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    _no_network(monkeypatch)
    # Unreachable on purpose: the answer must be the validation, not the network.
    adapter = ActiveDirectory(samba_dc.ad_settings(url=UNREACHABLE, bind_password=password))

    for call in (adapter.test_connection, adapter.snapshot,
                 lambda: adapter.get_user(str(uuid.uuid4()))):
        error = _error(call)
        assert error.code == "config" and error.permanent
        assert "password" in error.message and "empty" in error.message


def test_nothing_connects_until_used(samba_dc: SambaDC, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_network(monkeypatch)
    adapter = ActiveDirectory(samba_dc.ad_settings())
    assert "svc-blink" in repr(adapter)


def test_settings_repr_hides_secrets(samba_dc: SambaDC) -> None:
    settings = samba_dc.ad_settings()
    assert settings.bind_password not in repr(settings)
    assert "BEGIN CERTIFICATE" not in repr(settings)


def test_reconnects_after_the_connection_is_lost(ad: ActiveDirectory, samba_dc: SambaDC) -> None:
    sales = samba_dc.users["sales"]
    assert ad.get_user(sales.object_id).username == "ava.sales"
    link = activedirectory._link_for(ad.settings)
    link.connection().socket.shutdown(socket.SHUT_RDWR)

    assert ad.get_user(sales.object_id).username == "ava.sales"


def test_close_releases_and_the_next_call_reopens(ad: ActiveDirectory, samba_dc: SambaDC) -> None:
    ad.test_connection()
    first = activedirectory._link_for(ad.settings).connection()
    ad.close()

    assert first.closed
    assert ad.get_user(samba_dc.users["sales"].object_id).username == "ava.sales"


def test_threads_share_one_connection_safely(ad: ActiveDirectory, samba_dc: SambaDC) -> None:
    ids = [samba_dc.users[key].object_id for key in ("sales", "emea", "nomail", "pso")]
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for object_id in ids * 3:
                assert ad.get_user(object_id).object_id == object_id
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures


# --- snapshot -----------------------------------------------------------------------------


def test_snapshot_has_the_ou_tree(acme_snapshot: tuple[Snapshot, Any], samba_dc: SambaDC) -> None:
    snapshot, _ = acme_snapshot
    parents = {ou.name: ou.parent_dn for ou in snapshot.org_units}

    assert parents["Acme"] == samba_dc.base_dn
    assert parents["Sales"] == samba_dc.ous["Acme"]
    assert parents["EMEA"] == samba_dc.ous["Sales"]
    assert parents["IT"] == samba_dc.ous["Acme"]
    assert "Outside" not in parents


def test_snapshot_resolves_nested_groups(acme_snapshot: tuple[Snapshot, Any],
                                         samba_dc: SambaDC) -> None:
    snapshot, _ = acme_snapshot
    groups = {group.name: group for group in snapshot.groups}
    users = samba_dc.users

    assert groups["G-Sales"].member_ids == {
        users["sales"].object_id, users["emea"].object_id, users["nomail"].object_id
    }  # emea and nomail through G-Sales-EMEA; outside is out of scope
    assert groups["G-Sales"].parent_dn == samba_dc.ous["Sales"]
    assert groups["G-Sales"].description == "G-Sales staff"
    assert groups["G-IT-Admins"].member_ids == {users["nested_admin"].object_id}
    # Domain Admins lives in CN=Users, outside the scope.
    assert "Domain Admins" not in groups


def test_snapshot_has_the_whole_large_group(acme_snapshot: tuple[Snapshot, Any],
                                            samba_dc: SambaDC) -> None:
    snapshot, searches = acme_snapshot
    ids_by_dn = {user.dn: user.object_id for user in snapshot.users}
    bulk_ids = {ids_by_dn[dn] for dn in samba_dc.large_group_member_dns}
    large = next(group for group in snapshot.groups if group.name == "G-All-Staff")

    assert len(bulk_ids) == LARGE_GROUP_SIZE
    assert large.member_ids == bulk_ids | {
        samba_dc.users[key].object_id for key in ("sales", "emea", "nomail")
    }
    ranges = [a for call in searches for a in call["attributes"] or [] if ";range=" in a]
    assert "member;range=1500-2999" in ranges  # the members past the first window


def test_snapshot_pages_and_reads_groups_once(acme_snapshot: tuple[Snapshot, Any]) -> None:
    _, searches = acme_snapshot
    # OUs, users and groups of the scope, all domain groups, one more range of the large group
    assert len(searches) <= 8
    assert not any("tokenGroups" in (call["attributes"] or []) for call in searches)


def test_snapshot_users(acme_snapshot: tuple[Snapshot, Any], samba_dc: SambaDC) -> None:
    snapshot, _ = acme_snapshot
    users = {user.object_id: user for user in snapshot.users}
    seeded = samba_dc.users

    sales = users[seeded["sales"].object_id]
    assert (sales.username, sales.upn, sales.display_name, sales.given_name, sales.surname) == (
        "ava.sales", "ava.sales@blink.test", "Ava Sales", "Ava", "Sales")
    assert (sales.email, sales.mobile, sales.enabled, sales.protected) == (
        "ava@acme.example", "+15555550101", True, False)
    assert sales.dn == seeded["sales"].dn and sales.parent_dn == samba_dc.ous["Sales"]

    nomail = users[seeded["nomail"].object_id]
    assert (nomail.email, nomail.mobile) == ("", "")
    assert users[seeded["emea"].object_id].mobile == ""
    assert users[seeded["disabled"].object_id].enabled is False
    assert users[seeded["nested_admin"].object_id].protected is True
    assert seeded["outside"].object_id not in users
    assert all(uuid.UUID(object_id).hex for object_id in users)


def test_snapshot_keeps_names_with_ldap_metacharacters(acme_snapshot: tuple[Snapshot, Any],
                                                       samba_dc: SambaDC) -> None:
    snapshot, _ = acme_snapshot
    special = samba_dc.users["special"]
    user = next(user for user in snapshot.users if user.object_id == special.object_id)

    assert user.username == "odd)(na\x00me"
    assert user.display_name == 'Odd *)(\\ ,+=" \x00Name'
    assert user.dn == special.dn and user.parent_dn == samba_dc.ous["EMEA"]


def test_snapshot_of_the_whole_domain(ad: ActiveDirectory, samba_dc: SambaDC) -> None:
    snapshot = ad.snapshot()
    groups = {group.name: group for group in snapshot.groups}
    users = {user.username: user for user in snapshot.users}

    assert samba_dc.users["outside"].object_id in groups["G-Sales"].member_ids
    assert samba_dc.users["nested_admin"].object_id in groups["Domain Admins"].member_ids
    # Domain Users holds its members through primaryGroupID, not member.
    assert samba_dc.users["sales"].object_id in groups["Domain Users"].member_ids
    assert users["Administrator"].protected and users["ian.itadmin"].protected
    assert not users["svc-blink"].protected and not users["olga.outside"].protected
    # The service account is set so (as service accounts often are); ordinary users are not.
    assert users["svc-blink"].password_never_expires
    assert not users["olga.outside"].password_never_expires


# --- one user ------------------------------------------------------------------------------


def test_get_user(acme: ActiveDirectory, samba_dc: SambaDC) -> None:
    seeded = samba_dc.users["emea"]

    user = acme.get_user(seeded.object_id.upper())

    assert user.object_id == seeded.object_id
    assert (user.username, user.email, user.dn, user.protected) == (
        "emil.emea", "emil@acme.example", seeded.dn, False)
    assert acme.get_user(samba_dc.users["nested_admin"].object_id).protected is True


def test_get_user_with_metacharacters_in_its_names(acme: ActiveDirectory,
                                                   samba_dc: SambaDC) -> None:
    special = samba_dc.users["special"]
    user = acme.get_user(special.object_id)
    assert (user.username, user.dn) == ("odd)(na\x00me", special.dn)


def test_get_user_outside_the_scope_is_not_found(acme: ActiveDirectory, ad: ActiveDirectory,
                                                 samba_dc: SambaDC) -> None:
    outside = samba_dc.users["outside"].object_id

    error = _error(lambda: acme.get_user(outside))

    assert error.code == "not_found" and error.permanent
    assert ad.get_user(outside).username == "olga.outside"


@pytest.mark.parametrize("object_id", ["*", ")(objectClass=*", "\\2a", "\x00", "", "x" * 500])
def test_lookups_with_filter_metacharacters_match_nothing(
    acme: ActiveDirectory, object_id: str
) -> None:
    error = _error(lambda: acme.get_user(object_id))
    assert error.code == "not_found"
    assert _error(lambda: acme.is_protected(object_id)).code == "not_found"


def test_guid_bytes_are_escaped_in_the_filter(acme: ActiveDirectory, searches: SearchLog) -> None:
    # objectGUID bytes that spell *, (, ), \ and NUL
    tricky = str(uuid.UUID(bytes_le=b"*()\\\x00*()\\\x00*()\\\x00*"))

    assert _error(lambda: acme.get_user(tricky)).code == "not_found"

    sent = searches.calls[-1]["filter"]
    assert "objectGUID=\\2a\\28\\29\\5c\\00" in sent
    assert "*" not in sent.split("objectGUID=")[1]


def test_unknown_user_is_not_found(acme: ActiveDirectory) -> None:
    error = _error(lambda: acme.get_user(str(uuid.uuid4())))
    assert error.code == "not_found" and error.permanent


# --- password policy ----------------------------------------------------------------------


def test_domain_password_policy(ad: ActiveDirectory, samba_dc: SambaDC) -> None:
    for policy in (ad.password_policy(), ad.password_policy(samba_dc.users["sales"].object_id)):
        assert policy.min_length == DOMAIN_MIN_LENGTH
        assert policy.complexity is True
        assert policy.history_length == DOMAIN_HISTORY
        assert policy.lockout_threshold == LOCKOUT_THRESHOLD
        assert policy.lockout_duration == LOCKOUT_DURATION


def test_fine_grained_policy_of_a_pso_user(ad: ActiveDirectory, samba_dc: SambaDC) -> None:
    policy = ad.password_policy(samba_dc.users["pso"].object_id)

    assert policy.min_length == PSO_MIN_LENGTH
    assert policy.complexity is True
    assert policy.history_length == PSO_HISTORY
    assert policy.lockout_threshold == PSO_LOCKOUT_THRESHOLD
    assert policy.lockout_duration == PSO_LOCKOUT_DURATION


# --- resets --------------------------------------------------------------------------------


def test_reset_sets_the_password_and_must_change(
    ad: ActiveDirectory, samba_dc: SambaDC, samba_user: MakeUser
) -> None:
    user = samba_user()
    new = strong_password()

    ad.reset_password(user.object_id, new)

    ok, message = samba_dc.try_bind(user.upn, new)
    assert not ok and "data 773" in message  # right password, must change it first
    assert samba_dc.read(user.dn, "pwdLastSet")["pwdLastSet"] == [b"0"]
    ok, message = samba_dc.try_bind(user.upn, user.password)
    assert not ok and "data 52e" in message


def test_reset_without_must_change(ad: ActiveDirectory, samba_dc: SambaDC,
                                   samba_user: MakeUser) -> None:
    user = samba_user()
    new = strong_password()

    ad.reset_password(user.object_id, new, must_change=False)

    assert samba_dc.try_bind(user.upn, new) == (True, "")


def test_reset_is_one_modify(ad: ActiveDirectory, samba_user: MakeUser,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    user = samba_user()
    modifies: list[dict[str, Any]] = []
    original = ldap3.Connection.modify

    def modify(connection: ldap3.Connection, dn: str, changes: dict[str, Any],
               *args: Any, **kwargs: Any) -> Any:
        modifies.append(changes)
        return original(connection, dn, changes, *args, **kwargs)

    monkeypatch.setattr(ldap3.Connection, "modify", modify)
    ad.reset_password(user.object_id, strong_password(), unlock=True)

    assert len(modifies) == 1
    assert set(modifies[0]) == {"unicodePwd", "pwdLastSet", "lockoutTime"}


def test_reset_with_unlock_clears_the_lockout(ad: ActiveDirectory, samba_dc: SambaDC,
                                              samba_user: MakeUser) -> None:
    user = samba_user()
    _lock(samba_dc, user)
    new = strong_password()

    ad.reset_password(user.object_id, new, unlock=True)

    assert samba_dc.read(user.dn, "lockoutTime")["lockoutTime"] == [b"0"]
    ok, message = samba_dc.try_bind(user.upn, new)
    assert not ok and "data 773" in message  # no longer 775: unlocked


@pytest.mark.parametrize(
    ("password", "groups", "words"),
    [
        ("Ab1!x", (), f"at least {DOMAIN_MIN_LENGTH} characters"),
        ("onlylowercaseletters", (), "complexity"),
        ("Abcdef12!xyz", ("G-Strict-Policy",), f"at least {PSO_MIN_LENGTH} characters"),
    ],
)
def test_a_password_the_policy_refuses_names_the_rule(
    ad: ActiveDirectory, samba_dc: SambaDC, samba_user: MakeUser,
    password: str, groups: tuple[str, ...], words: str, caplog: pytest.LogCaptureFixture,
) -> None:
    user = samba_user(groups=groups)

    with caplog.at_level(logging.DEBUG):
        error = _error(lambda: ad.reset_password(user.object_id, password))

    assert error.code == "policy" and error.permanent
    assert words in error.message and "not changed" in error.message
    assert password not in error.message and password not in caplog.text
    assert samba_dc.try_bind(user.upn, user.password) == (True, "")  # the old one still works


@pytest.mark.parametrize("password", ["", "   ", "\t"])
def test_blank_new_password_is_refused_before_the_network(
    samba_dc: SambaDC, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    _no_network(monkeypatch)
    adapter = ActiveDirectory(samba_dc.ad_settings(url=UNREACHABLE))

    error = _error(lambda: adapter.reset_password(str(uuid.uuid4()), password))

    assert error.code == "policy" and "empty" in error.message


def test_reset_of_a_protected_user_is_refused_and_changes_nothing(
    ad: ActiveDirectory, samba_dc: SambaDC
) -> None:
    admin = samba_dc.users["nested_admin"]
    before = samba_dc.read(admin.dn, "pwdLastSet", "lockoutTime")

    error = _error(lambda: ad.reset_password(admin.object_id, strong_password(), unlock=True))

    assert error.code == "protected" and error.permanent
    assert "Domain Admins" in error.message and "Ian IT-Admin" in error.message
    assert samba_dc.read(admin.dn, "pwdLastSet", "lockoutTime") == before
    assert samba_dc.try_bind(admin.upn, admin.password) == (True, "")
    assert _error(lambda: ad.unlock(admin.object_id)).code == "protected"


def _account_reads(searches: SearchLog) -> list[dict[str, Any]]:
    """The searches that read a user's tokenGroups (the account reads of resets)."""
    return [call for call in searches.calls if "tokenGroups" in (call["attributes"] or [])]


def test_a_reset_after_its_policy_reads_the_account_once(
    ad: ActiveDirectory, samba_dc: SambaDC, samba_user: MakeUser, searches: SearchLog
) -> None:
    user = samba_user()
    new = strong_password()

    ad.password_policy(user.object_id)
    ad.reset_password(user.object_id, new)

    assert len(_account_reads(searches)) == 1
    ok, message = samba_dc.try_bind(user.upn, new)
    assert not ok and "data 773" in message


def test_a_kept_account_read_serves_one_reset_of_that_user_only(
    ad: ActiveDirectory, samba_user: MakeUser, searches: SearchLog
) -> None:
    user, other = samba_user(), samba_user()

    ad.password_policy(user.object_id)
    ad.reset_password(other.object_id, strong_password())  # another user: read afresh
    ad.reset_password(user.object_id, strong_password())  # the kept read was dropped
    ad.password_policy(user.object_id)
    ad.reset_password(user.object_id, strong_password())  # kept, taken
    ad.reset_password(user.object_id, strong_password())  # and not taken twice
    fresh = ActiveDirectory(ad.settings)
    fresh.reset_password(user.object_id, strong_password())  # another adapter keeps nothing

    assert len(_account_reads(searches)) == 6


def test_an_account_made_privileged_after_an_old_policy_read_is_refused(
    ad: ActiveDirectory, samba_dc: SambaDC, samba_user: MakeUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = samba_user()
    ad.password_policy(user.object_id)
    admin = samba_dc.admin_connection()
    try:
        admin.modify(samba_dc.groups["G-IT-Admins"], {"member": [(ldap3.MODIFY_ADD, [user.dn])]})
        assert admin.result["result"] == 0, admin.result
    finally:
        admin.unbind()
    # The policy's read is past its reuse window, so the reset reads tokenGroups again.
    monkeypatch.setattr(activedirectory, "ACCOUNT_REUSE_SECONDS", 0)

    error = _error(lambda: ad.reset_password(user.object_id, strong_password()))

    assert error.code == "protected" and "Domain Admins" in error.message
    assert samba_dc.try_bind(user.upn, user.password) == (True, "")


def test_a_protected_user_is_refused_after_its_policy_read_too(
    ad: ActiveDirectory, samba_dc: SambaDC
) -> None:
    admin = samba_dc.users["nested_admin"]

    ad.password_policy(admin.object_id)
    error = _error(lambda: ad.reset_password(admin.object_id, strong_password()))

    assert error.code == "protected"
    assert samba_dc.try_bind(admin.upn, admin.password) == (True, "")


def test_is_protected_follows_nesting(ad: ActiveDirectory, samba_dc: SambaDC) -> None:
    administrator = samba_dc.read(samba_dc.admin_dn, "objectGUID")["objectGUID"][0]

    assert ad.is_protected(samba_dc.users["nested_admin"].object_id) is True
    assert ad.is_protected(str(uuid.UUID(bytes_le=administrator))) is True
    assert ad.is_protected(samba_dc.users["sales"].object_id) is False
    assert ad.is_protected(samba_dc.users["pso"].object_id) is False


def test_a_service_account_without_rights_gets_a_sentence(
    samba_dc: SambaDC, samba_user: MakeUser
) -> None:
    weak, target = samba_user(), samba_user()
    adapter = ActiveDirectory(samba_dc.ad_settings(bind_user=weak.upn,
                                                   bind_password=weak.password))
    try:
        error = _error(lambda: adapter.reset_password(target.object_id, strong_password()))
    finally:
        adapter.close()

    assert error.code == "insufficient_rights" and error.permanent
    assert weak.upn in error.message and "Reset password" in error.message
    assert samba_dc.try_bind(target.upn, target.password) == (True, "")


# --- lockouts ------------------------------------------------------------------------------


def test_lockout_is_found_with_one_search_and_unlock_clears_it(
    ad: ActiveDirectory, samba_dc: SambaDC, samba_user: MakeUser, searches: SearchLog
) -> None:
    locked, fine = samba_user(), samba_user()
    _lock(samba_dc, locked)
    before = len(searches.calls)

    found = ad.locked_out([locked.object_id, fine.object_id, samba_dc.users["sales"].object_id])

    assert len(searches.calls) - before == 1
    assert set(found) == {locked.object_id}
    since = found[locked.object_id]
    assert since.tzinfo is not None
    assert dt.timedelta(0) <= dt.datetime.now(dt.UTC) - since < dt.timedelta(minutes=1)

    ad.unlock(locked.object_id)

    assert samba_dc.try_bind(locked.upn, locked.password) == (True, "")
    assert ad.locked_out([locked.object_id, fine.object_id]) == {}


def test_locked_out_only_answers_for_the_ids_asked(
    ad: ActiveDirectory, samba_dc: SambaDC, samba_user: MakeUser
) -> None:
    locked = samba_user()
    _lock(samba_dc, locked)

    assert ad.locked_out([samba_dc.users["sales"].object_id]) == {}
    assert ad.locked_out([]) == {}
    assert ad.locked_out(["*", "not-a-guid"]) == {}
    assert set(ad.locked_out([locked.object_id.upper()])) == {locked.object_id.upper()}


def test_a_lockout_older_than_the_duration_has_expired(
    ad: ActiveDirectory, samba_dc: SambaDC, samba_user: MakeUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = samba_user()
    _lock(samba_dc, user)
    now = dt.datetime.now(dt.UTC)

    monkeypatch.setattr(activedirectory, "_utcnow", lambda: now + LOCKOUT_DURATION / 2)
    assert set(ad.locked_out([user.object_id])) == {user.object_id}
    monkeypatch.setattr(activedirectory, "_utcnow",
                        lambda: now + LOCKOUT_DURATION + dt.timedelta(seconds=5))
    assert ad.locked_out([user.object_id]) == {}


def test_a_pso_users_lockout_lasts_the_pso_duration(
    ad: ActiveDirectory, samba_dc: SambaDC, samba_user: MakeUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = samba_user(groups=("G-Strict-Policy",))
    _lock(samba_dc, user, attempts=PSO_LOCKOUT_THRESHOLD)
    now = dt.datetime.now(dt.UTC)

    # Past the domain's duration, within the PSO's.
    monkeypatch.setattr(activedirectory, "_utcnow",
                        lambda: now + LOCKOUT_DURATION + dt.timedelta(minutes=1))
    assert set(ad.locked_out([user.object_id])) == {user.object_id}
    monkeypatch.setattr(activedirectory, "_utcnow",
                        lambda: now + PSO_LOCKOUT_DURATION + dt.timedelta(seconds=5))
    assert ad.locked_out([user.object_id]) == {}


def test_an_account_whose_password_never_expires_is_not_given_a_temporary_password(
    ad: ActiveDirectory, samba_dc: SambaDC, samba_user: MakeUser,
) -> None:
    # AD (and Samba) ignore pwdLastSet=0 on such accounts: the temporary password would
    # never have to be changed. Blink refuses and changes nothing.
    user = samba_user(never_expires=True)
    new = strong_password()

    # What the sync records, so the console can say so before anyone asks for a reset.
    assert ad.get_user(user.object_id).password_never_expires is True
    with pytest.raises(DirectoryError) as refused:
        ad.reset_password(user.object_id, new)

    assert refused.value.code == "never_expires" and refused.value.permanent
    assert "Password never expires" in refused.value.message
    assert samba_dc.try_bind(user.upn, user.password) == (True, "")
    assert samba_dc.try_bind(user.upn, new)[0] is False
    # Without "must change", as an admin's own tools would set it, it is no concern of this.
    ad.reset_password(user.object_id, new, must_change=False)
    assert samba_dc.try_bind(user.upn, new) == (True, "")


# --- what the service account cannot read, and accounts privileged by their RID -----------

USER_ACCOUNT_CONTROL_ATTR = "bf967a68-0de6-11d0-a285-00aa003049e2"


def _deny_read(samba_dc: SambaDC, object_dn: str, attribute_guid: str, trustee_dn: str) -> None:
    """An explicit deny-read ACE for ``trustee_dn`` on one attribute of ``object_dn``, written
    with samba-tool into sam.ldb the way the fixture delegates (Samba's LDAP server only
    takes binary security descriptors)."""
    trustee_sid = activedirectory._sid(samba_dc.read(trustee_dn, "objectSid")["objectSid"][0])
    conf = samba_dc.directory / "dc" / "etc" / "smb.conf"
    sam_ldb = samba_dc.directory / "dc" / "private" / "sam.ldb"
    samba_run(["samba-tool", "dsacl", "set", "-H", str(sam_ldb), "-s", str(conf),
               f"--objectdn={object_dn}", f"--sddl=(OD;;RP;{attribute_guid};;{trustee_sid})"],
              "samba-tool dsacl set (deny read)")


def _object_id_at(samba_dc: SambaDC, dn: str) -> str:
    return str(uuid.UUID(bytes_le=samba_dc.read(dn, "objectGUID")["objectGUID"][0]))


def test_a_reset_is_refused_when_user_account_control_cannot_be_read(
    ad: ActiveDirectory, samba_dc: SambaDC, samba_user: MakeUser,
) -> None:
    # Unreadable, the "password never expires" flag would pass for unset, and the texted
    # temporary password could stay for good on an account that has it.
    user = samba_user(never_expires=True)
    _deny_read(samba_dc, user.dn, USER_ACCOUNT_CONTROL_ATTR, samba_dc.service_dn)
    as_service = ldap3.Connection(samba_dc.server(), samba_dc.service_upn,
                                  samba_dc.service_password, auto_bind=True)
    try:
        as_service.search(user.dn, "(objectClass=*)", ldap3.BASE,
                          attributes=["userAccountControl", "tokenGroups"])
        seen = as_service.response[0]["raw_attributes"]
    finally:
        as_service.unbind()
    assert not seen.get("userAccountControl") and seen["tokenGroups"]  # the ACE took effect
    new = strong_password()

    error = _error(lambda: ad.reset_password(user.object_id, new))

    assert error.code == "insufficient_rights" and error.permanent
    assert "userAccountControl" in error.message and samba_dc.service_upn in error.message
    assert samba_dc.try_bind(user.upn, user.password) == (True, "")
    assert samba_dc.try_bind(user.upn, new)[0] is False


def test_the_built_in_administrator_is_refused_whatever_its_groups(
    ad: ActiveDirectory, samba_dc: SambaDC, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Taking Administrator out of its groups would leave the shared DC without a working
    # admin, so the group check is blinded instead: only the account's own RID can refuse.
    monkeypatch.setattr(activedirectory, "PROTECTED_RIDS", {})
    monkeypatch.setattr(activedirectory, "PROTECTED_BUILTIN_SIDS", {})
    administrator = _object_id_at(samba_dc, samba_dc.admin_dn)
    before = samba_dc.read(samba_dc.admin_dn, "pwdLastSet", "lockoutTime")

    # Its own password, without "must change": were it ever let through, the fixture's
    # admin would still sign in.
    reset = _error(lambda: ad.reset_password(administrator, samba_dc.admin_password,
                                             must_change=False, unlock=True))
    unlock = _error(lambda: ad.unlock(administrator))

    for error in (reset, unlock):
        assert error.code == "protected" and error.permanent
        assert "built-in Administrator account" in error.message
    assert ad.is_protected(administrator) is True
    assert ad.get_user(administrator).protected is True
    assert samba_dc.read(samba_dc.admin_dn, "pwdLastSet", "lockoutTime") == before
    assert samba_dc.try_bind(samba_dc.admin_upn, samba_dc.admin_password) == (True, "")


def test_krbtgt_is_refused_though_it_is_in_no_privileged_group(
    ad: ActiveDirectory, samba_dc: SambaDC,
) -> None:
    krbtgt_dn = f"CN=krbtgt,CN=Users,{samba_dc.base_dn}"
    krbtgt = _object_id_at(samba_dc, krbtgt_dn)
    before = samba_dc.read(krbtgt_dn, "pwdLastSet", "lockoutTime")

    reset = _error(lambda: ad.reset_password(krbtgt, strong_password(), unlock=True))
    unlock = _error(lambda: ad.unlock(krbtgt))

    for error in (reset, unlock):
        assert error.code == "protected" and error.permanent
        assert "krbtgt" in error.message
    assert ad.is_protected(krbtgt) is True
    assert samba_dc.read(krbtgt_dn, "pwdLastSet", "lockoutTime") == before
    snapshot = {user.username: user for user in ad.snapshot().users}
    assert snapshot["krbtgt"].protected is True and snapshot["krbtgt"].enabled is False
