"""How the AD adapter reads AD's answers, without a server: error sentences and values
that the Samba fixture cannot produce on demand (an expired password, a 53 on write,
"never" durations)."""

from __future__ import annotations

import datetime as dt

import pytest

from directory.activedirectory import (
    ADSettings,
    _bind_error,
    _complex_enough,
    _dn_domain,
    _endpoint,
    _filetime,
    _interval,
    _parent_dn,
    _protected_group_name,
    _result_error,
    _sid,
)
from directory.base import DirectoryError

SETTINGS = ADSettings(url="ldaps://dc.example.com", bind_user="svc@example.com",
                      bind_password="Secret-Passw0rd!", base_dn="DC=example,DC=com")


def _bind_failure(data: str) -> dict[str, object]:
    return {"result": 49, "description": "invalidCredentials",
            "message": f"80090308: LdapErr: DSID-0C09030B, comment: AcceptSecurityContext "
                       f"error, data {data}, v893"}


@pytest.mark.parametrize(
    ("data", "code", "permanent", "words"),
    [
        ("52e", "bad_credentials", True, "user name or password"),
        ("525", "bad_credentials", True, "no such account"),
        ("775", "locked", False, "locked out"),
        ("773", "must_change", True, "must change its password"),
        ("532", "password_expired", True, "has expired"),
        ("533", "disabled", True, "is disabled"),
        ("701", "account_expired", True, "expired"),
        ("530", "logon_restricted", True, "time of day"),
        ("zzz", "bad_credentials", True, "refused to sign in"),
    ],
)
def test_bind_failures_become_sentences(data: str, code: str, permanent: bool,
                                        words: str) -> None:
    error = _bind_error(_bind_failure(data), SETTINGS)

    assert (error.code, error.permanent) == (code, permanent)
    assert words in error.message and "svc@example.com" in error.message
    assert SETTINGS.bind_password not in error.message


@pytest.mark.parametrize(
    ("result", "code", "permanent"),
    [
        (50, "insufficient_rights", True),
        (8, "tls_required", True),
        (13, "tls_required", True),
        (32, "not_found", True),
        (51, "unavailable", False),
        (52, "unavailable", False),
        (1, "error", True),
    ],
)
def test_operation_failures_become_sentences(result: int, code: str, permanent: bool) -> None:
    error = _result_error({"result": result, "description": "x", "message": ""}, SETTINGS,
                          "reset this user's password")

    assert (error.code, error.permanent) == (code, permanent)
    assert error.message.endswith(".")


def test_ldaps_with_starttls_set_is_still_ldaps() -> None:
    endpoint = _endpoint(ADSettings(url="LDAPS://DC.example.com", bind_user="u",
                                    bind_password="p", base_dn="DC=example,DC=com",
                                    start_tls=True))
    assert (endpoint.host, endpoint.port, endpoint.use_ssl) == ("dc.example.com", 636, True)


@pytest.mark.parametrize(
    ("url", "code"),
    [("http://dc.example.com", "config"), ("ldaps://", "config"),
     ("ldaps://dc:notaport", "config"), ("ldap://dc.example.com", "tls_required")],
)
def test_bad_urls_are_refused(url: str, code: str) -> None:
    with pytest.raises(DirectoryError) as caught:
        _endpoint(ADSettings(url=url, bind_user="u", bind_password="p",
                             base_dn="DC=example,DC=com"))
    assert caught.value.code == code and caught.value.permanent


def test_a_base_dn_without_a_domain_is_refused() -> None:
    with pytest.raises(DirectoryError) as caught:
        _endpoint(ADSettings(url="ldaps://dc", bind_user="u", bind_password="p",
                             base_dn="OU=Clients"))
    assert caught.value.code == "config"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-3_000_000_000, dt.timedelta(minutes=5)),
        (-(2**63), None),  # 0x8000000000000000: never
        (0, None),  # locked until an admin unlocks
    ],
)
def test_lockout_durations(value: int, expected: dt.timedelta | None) -> None:
    assert _interval(value) == expected


def test_filetime_is_aware_utc() -> None:
    assert _filetime(116_444_736_000_000_000) == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def test_sids_and_the_protected_groups() -> None:
    raw = bytes([1, 5, 0, 0, 0, 0, 0, 5]) + b"".join(
        n.to_bytes(4, "little") for n in (21, 1, 2, 3, 512))
    assert _sid(raw) == "S-1-5-21-1-2-3-512"
    assert _protected_group_name("S-1-5-21-1-2-3-512") == "Domain Admins"
    assert _protected_group_name("S-1-5-21-9-9-9-519") == "Enterprise Admins"
    assert _protected_group_name("S-1-5-32-548") == "Account Operators"
    assert _protected_group_name("S-1-5-21-1-2-3-513") is None  # Domain Users
    assert _protected_group_name("S-1-5-21-1-2-3-1512") is None
    assert _protected_group_name("S-1-5-32-545") is None  # Users


def test_dn_parents_respect_escapes() -> None:
    assert _parent_dn("CN=Doe\\, Jane,OU=Sales\\\\,DC=example,DC=com") == (
        "OU=Sales\\\\,DC=example,DC=com")
    assert _parent_dn("CN=a\\2Cb,DC=example,DC=com") == "DC=example,DC=com"
    assert _dn_domain("OU=x,OU=y,DC=example,DC=com") == "DC=example,DC=com"
    assert _parent_dn("DC=com") == ""


@pytest.mark.parametrize(
    ("password", "ok"),
    [("Abcdefg1", True), ("abcdefgh", False), ("abcdefg1", False), ("abc-def-1", True),
     ("Jane-Doe-2024", False), ("jdoe!Pass1", False)],
)
def test_complexity_rule(password: str, ok: bool) -> None:
    assert _complex_enough(password, "jdoe", "Jane Doe") is ok
