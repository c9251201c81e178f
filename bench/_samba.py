"""The benchmarks' domain: the test suite's Samba AD DC, seeded at an MSP client's scale.

``bench_dc`` provisions and starts a DC with the pieces of ``tests/fixtures/samba.py``
(its CA, provisioning, start, stop and machine lock), then seeds it over one LDAPS
connection: ``BenchDomain.users`` users spread over ``org_units`` OUs and ``groups``
groups (some nested, each user in 1-3 of them), and a service account with the
delegation the fixture gives Blink. Users have no passwords (Samba then creates them
disabled), except the first ``password_users``, which the lockout benchmark locks.
"""

from __future__ import annotations

import datetime as dt
import gc
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import ldap3

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # Run as `python bench/<name>.py`: the project's packages live one level up.
    sys.path.insert(0, str(ROOT))

from tests.fixtures.samba import (  # noqa: E402
    BASE_DN,
    SambaDC,
    SeededUser,
    _check,
    _delegate,
    _filetime_interval,
    _machine_lock,
    _members_add,
    _port_free,
    _samba_dc_run,
    _samba_env,
    _sid_string,
    strong_password,
    user_add,
)

if TYPE_CHECKING:
    from ldap3 import Connection

GIVEN_NAMES = ["Ava", "Ben", "Chloe", "Dan", "Eva", "Finn", "Grace", "Hugo", "Ines", "Jack",
               "Kara", "Liam", "Mia", "Noah", "Olga", "Pia", "Quinn", "Rosa", "Sam", "Tara"]
SURNAMES = ["Adams", "Baker", "Clark", "Diaz", "Evans", "Fischer", "Garcia", "Hughes",
            "Ito", "Jones", "Khan", "Lopez", "Martin", "Nagy", "Olsen", "Patel", "Quirke",
            "Rossi", "Smith", "Tanaka", "Underwood", "Vogel", "Weber", "Young", "Zhang"]
# A lockout that outlasts the run, so every locked user stays locked while it is measured.
LOCKOUT_DURATION = dt.timedelta(minutes=30)


@dataclass(frozen=True)
class BenchDomain:
    """The shape of the seeded domain."""

    users: int = 10_000
    # 20 top-level OUs with 9 child OUs each; users spread evenly over all of them.
    top_org_units: int = 20
    child_org_units: int = 9
    groups: int = 100
    # The first N users get a password (and so are enabled): the ones the lockout bench locks.
    password_users: int = 0
    lockout_threshold: int = 3

    @property
    def org_units(self) -> int:
        return self.top_org_units * (1 + self.child_org_units)


def username(index: int) -> str:
    return f"u{index:05d}"


def _org_unit_dns(domain: BenchDomain) -> list[str]:
    dns = []
    for top in range(domain.top_org_units):
        top_dn = f"OU=Region {top:02d},{BASE_DN}"
        dns.append(top_dn)
        dns.extend(f"OU=Team {top:02d}-{child},{top_dn}"
                   for child in range(domain.child_org_units))
    return dns


def _nesting(domain: BenchDomain) -> dict[int, list[int]]:
    """Which groups contain which: three levels, as departments > teams > projects."""
    fifth = domain.groups // 5
    parents: dict[int, list[int]] = {}
    for k in range(fifth):
        parents[k] = [fifth + k, 2 * fifth + k]
    for k in range(fifth // 2):
        parents.setdefault(fifth + k, []).append(3 * fifth + k)
    return parents


def _seed(domain: BenchDomain, connection: Connection, conf: Path) -> dict[str, Any]:
    """Seed ``domain``; return the SambaDC fields (service account, OUs, groups, users)."""
    started = time.monotonic()
    rng = random.Random(2024)  # noqa: S311 - reproducible names and memberships, not secrets
    connection.modify(BASE_DN, {
        "lockoutThreshold": [(ldap3.MODIFY_REPLACE, [str(domain.lockout_threshold)])],
        "lockoutDuration": [(ldap3.MODIFY_REPLACE, [_filetime_interval(LOCKOUT_DURATION)])],
        "lockOutObservationWindow": [
            (ldap3.MODIFY_REPLACE, [_filetime_interval(LOCKOUT_DURATION)])],
    })
    _check(connection, "set the domain lockout policy")

    ou_dns = _org_unit_dns(domain)
    for dn in ou_dns:
        connection.add(dn, "organizationalUnit")
        _check(connection, f"add {dn}")

    # The service account's group and its delegated rights, before the bulk objects
    # exist (Samba propagates the inherited ACEs to every object already there).
    operators_dn = f"CN=G-Blink-Operators,CN=Users,{BASE_DN}"
    connection.add(operators_dn, "group", {"sAMAccountName": "G-Blink-Operators"})
    _check(connection, f"add group {operators_dn}")
    connection.search(operators_dn, "(objectClass=*)", ldap3.BASE, attributes=["objectSid"])
    operators = next(e for e in connection.response or [] if e["type"] == "searchResEntry")
    _delegate(conf, _sid_string(operators["raw_attributes"]["objectSid"][0]))
    service_password = strong_password()
    service_dn = f"CN=svc-blink,CN=Users,{BASE_DN}"
    user_add(connection, dn=service_dn, username="svc-blink", password=service_password,
             never_expires=True, displayName="Blink service account")
    _members_add(connection, operators_dn, [service_dn])

    group_dns = [f"CN=G-Bench-{k:03d},{ou_dns[(k % domain.top_org_units) * 10]}"
                 for k in range(domain.groups)]
    for k, dn in enumerate(group_dns):
        connection.add(dn, "group", {"sAMAccountName": f"G-Bench-{k:03d}",
                                     "description": f"Benchmark group {k}"})
        _check(connection, f"add group {dn}")

    members: list[list[str]] = [[] for _ in group_dns]
    users: dict[str, SeededUser] = {}
    for i in range(domain.users):
        given, surname = rng.choice(GIVEN_NAMES), rng.choice(SURNAMES)
        name = username(i)
        dn = f"CN={given} {surname} {i:05d},{ou_dns[i % len(ou_dns)]}"
        attributes: dict[str, Any] = {
            "givenName": given, "sn": surname, "displayName": f"{given} {surname}",
            "mail": f"{given.lower()}.{surname.lower()}.{i}@acme.example"
            if rng.random() < 0.9 else "",
            "mobile": f"+1555{i:07d}" if rng.random() < 0.6 else "",
        }
        password = strong_password() if i < domain.password_users else ""
        user_add(connection, dn=dn, username=name, password=password, **attributes)
        if password:
            users[name] = SeededUser(key=name, dn=dn, username=name,
                                     upn=f"{name}@blink.test", object_id="",
                                     password=password)
        for k in rng.sample(range(domain.groups), rng.choice([1, 1, 2, 2, 3])):
            members[k].append(dn)
        if (i + 1) % 2000 == 0:
            print(f"  seeded {i + 1:,} users ({time.monotonic() - started:.0f} s)",
                  flush=True)

    for k, child_ids in _nesting(domain).items():
        members[k].extend(group_dns[child] for child in child_ids)
    for dn, member_dns in zip(group_dns, members, strict=True):
        if member_dns:
            _members_add(connection, dn, member_dns)
    print(f"  seeded {domain.users:,} users, {len(ou_dns)} OUs and {len(group_dns)} groups "
          f"in {time.monotonic() - started:.0f} s", flush=True)
    return {
        "ous": {dn: dn for dn in ou_dns},
        "groups": {dn: dn for dn in group_dns},
        "users": users,
        "service_upn": "svc-blink@blink.test",
        "service_dn": service_dn,
        "service_password": service_password,
    }


@contextmanager
def bench_dc(domain: BenchDomain) -> Iterator[SambaDC]:
    """A running, seeded DC; stopped and its files removed on exit.

    Waits for the machine's Samba lock (the test suite's DC takes it too): the DC's
    ports are fixed, so one DC runs at a time.
    """
    path = _samba_env()["PATH"]
    if any(shutil.which(tool, path=path) is None for tool in ("samba", "samba-tool")):
        raise SystemExit("The benchmarks need Samba (Debian: apt-get install samba "
                         "samba-ad-dc) and must run as root.")
    print(f"Waiting for the Samba DC lock, then provisioning {domain.users:,} users…",
          flush=True)
    with _machine_lock():
        busy = [port for port in (389, 636) if not _port_free(port)]
        if busy:
            raise SystemExit(f"Port(s) {busy} on 127.0.0.1 are in use by a Samba outside "
                             "the lock; stop it first.")
        run = contextmanager(_samba_dc_run)
        with run(time.monotonic(), seed=partial(_seed, domain)) as dc:
            yield dc


def bound(dc: SambaDC) -> Connection:
    """A bound ldap3 connection as the service account (plain SYNC, as a raw client)."""
    connection = ldap3.Connection(
        dc.server(), dc.service_upn, dc.service_password, auto_referrals=False,
        auto_range=False, return_empty_attributes=False, receive_timeout=60,
    )
    if not connection.bind():
        raise RuntimeError(f"bind as {dc.service_upn} failed: {connection.result}")
    return connection


def paged_search(connection: Connection, base: str, search_filter: str,
                 attributes: list[str], page_size: int = 1000) -> list[dict[str, Any]]:
    """Every entry of a subtree search, page by page: the raw ldap3 baseline."""
    entries: list[dict[str, Any]] = []
    cookie: bytes | None = None
    while True:
        connection.search(base, search_filter, ldap3.SUBTREE, attributes=attributes,
                          paged_size=page_size, paged_cookie=cookie)
        _check(connection, f"search {search_filter}")
        entries.extend(e for e in connection.response or [] if e["type"] == "searchResEntry")
        control = connection.result.get("controls", {}).get("1.2.840.113556.1.4.319", {})
        cookie = control.get("value", {}).get("cookie")
        if not cookie:
            return entries


@contextmanager
def searches_counted() -> Iterator[list[int]]:
    """Count LDAP search requests (every page is one) made by any ldap3 connection."""
    count = [0]
    original = ldap3.Connection.search

    def search(self: Connection, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(self, *args, **kwargs)

    with mock.patch.object(ldap3.Connection, "search", search):
        yield count


def timed(action: Callable[[], Any]) -> float:
    """Seconds ``action`` took, after a full garbage collection (so runs start alike)."""
    gc.collect()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(rows: list[tuple[str, ...]]) -> str:
    """Rows of text as a Markdown table (the first row is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
             + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
