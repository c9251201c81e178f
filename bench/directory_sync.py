"""Directory sync at 10,000 users: Blink's full sync vs the raw LDAP reads it needs.

A Samba AD DC (10,000 users in 200 OUs, 100 groups with some nesting, each user in 1-3
groups) is seeded, then, each median of 3 runs:

- raw: ldap3 paged searches (page size 1000) of the OUs, the users and the domain's
  groups with the attributes the adapter asks for: the directory reads alone;
- the adapter's ``snapshot()`` alone;
- ``directory_sync`` (snapshot + ``snapshot_apply`` into PostgreSQL) into an empty
  snapshot, and again with nothing changed.

Target: full sync at most 2.0 times raw. Run from the repository root:

    .venv/bin/python bench/directory_sync.py

DJANGO_SETTINGS_MODULE defaults to tests.settings and DATABASE_URL to
postgres://postgres@127.0.0.1:5432/blink; the sync writes to a scratch database made
next to it (blink_bench_<pid>, migrated, dropped at the end).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from _samba import (
    BenchDomain,
    SambaDC,
    bench_dc,
    bound,
    median,
    paged_search,
    searches_counted,
    table,
    timed,
)

TARGET = 2.0
RUNS = 3


def raw_read(connection: Any, base_dn: str) -> int:
    """The adapter's reads done directly with ldap3; the number of entries read."""
    from directory.activedirectory import MEMBER_RANGE, USER_ATTRIBUTES, USER_FILTER

    org_units = paged_search(connection, base_dn, "(objectClass=organizationalUnit)",
                             ["objectGUID", "name"])
    users = paged_search(connection, base_dn, USER_FILTER, USER_ATTRIBUTES)
    groups = paged_search(connection, base_dn, "(objectClass=group)",
                          ["objectGUID", "name", "description", "objectSid",
                           f"member;range=0-{MEMBER_RANGE - 1}"])
    members = 0
    for group in groups:
        for name, values in group["raw_attributes"].items():
            members += len(values) if name.lower().startswith("member") else 0
            # No seeded group reaches MaxValRange; say so if one ever does.
            if name.lower().startswith("member;range=") and not name.endswith("*"):
                raise RuntimeError(f"{group['dn']} needs ranged retrieval; extend raw_read")
    return len(org_units) + len(users) + len(groups) + members


@contextmanager
def queries_counted() -> Iterator[list[int]]:
    """Count SQL statements sent on Django's default connection."""
    from django.db import connection

    count = [0]

    def count_one(execute: Callable[..., Any], sql: str, params: Any, many: bool,
                  context: dict[str, Any]) -> Any:
        count[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count_one):
        yield count


@contextmanager
def apply_timed() -> Iterator[list[float]]:
    """Time ``snapshot_apply`` inside ``directory_sync`` (the rest is the snapshot)."""
    from directory import services

    spent: list[float] = []
    original = services.snapshot_apply

    def snapshot_apply(**kwargs: Any) -> dict[str, int]:
        started = time.perf_counter()
        try:
            return original(**kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    with mock.patch.object(services, "snapshot_apply", snapshot_apply):
        yield spent


def snapshot_reset(connection_id: int) -> None:
    """Empty the connection's snapshot and let PostgreSQL tidy up (not timed)."""
    from directory.models import Entry, GroupMember

    Entry.objects.filter(connection_id=connection_id).delete()
    tables_vacuum(Entry._meta.db_table, GroupMember._meta.db_table)


def tables_vacuum(*tables: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {', '.join(tables)}")


def connection_make(dc: SambaDC) -> int:
    """A client with an Active Directory connection to the DC, as the service account."""
    from clients.models import Client, Company
    from directory.models import Connection

    company = Company.objects.create(name="Bench MSP", site_url="https://blink.example")
    client = Client.objects.create(company=company, name="Acme")
    connection = Connection(client=client, kind=Connection.Kind.ACTIVE_DIRECTORY, parameters={
        "url": dc.url, "bind_user": dc.service_upn, "base_dn": dc.base_dn, "ca_pem": dc.ca_pem,
    })
    connection.set_secrets({"bind_password": dc.service_password})
    connection.save()
    return connection.pk


def measure(dc: SambaDC) -> list[tuple[str, ...]]:
    from directory.activedirectory import ActiveDirectory, connections_close_all
    from directory.models import Entry, GroupMember
    from directory.services import directory_sync

    connection_id = connection_make(dc)
    adapter = ActiveDirectory(dc.ad_settings())
    raw_connection = bound(dc)
    try:
        # Warm both paths once (connections opened, the DC's caches filled), counting.
        with searches_counted() as raw_searches:
            entries = raw_read(raw_connection, dc.base_dn)
        with searches_counted() as adapter_searches:
            snapshot = adapter.snapshot()
        print(f"Raw reads: {entries:,} entries and member values; snapshot: "
              f"{len(snapshot.users):,} users, {len(snapshot.org_units)} OUs, "
              f"{len(snapshot.groups)} groups", flush=True)
        del snapshot

        raw_times, snapshot_times = [], []
        for _ in range(RUNS):
            raw_times.append(timed(lambda: raw_read(raw_connection, dc.base_dn)))
            snapshot_times.append(timed(adapter.snapshot))

        full_times, full_apply, full_queries = [], [], 0
        counts: dict[str, int] | None = None
        for _ in range(RUNS):
            snapshot_reset(connection_id)
            gc.collect()
            with apply_timed() as spent, queries_counted() as queries, \
                    searches_counted() as sync_searches:
                started = time.perf_counter()
                counts = directory_sync(connection_id=connection_id, claimed=True)
                full_times.append(time.perf_counter() - started)
            if counts is None:
                raise RuntimeError("the sync failed; see the log above")
            full_apply.extend(spent)
            full_queries = queries[0]
        print(f"Full sync: {counts}", flush=True)
        members = GroupMember.objects.filter(group__connection_id=connection_id).count()
        rows = Entry.objects.filter(connection_id=connection_id).count()

        tables_vacuum(Entry._meta.db_table, GroupMember._meta.db_table)
        again_times, again_apply, again_queries = [], [], 0
        for _ in range(RUNS):
            gc.collect()
            with apply_timed() as spent, queries_counted() as queries, \
                    searches_counted() as again_searches:
                started = time.perf_counter()
                counts = directory_sync(connection_id=connection_id, claimed=True)
                again_times.append(time.perf_counter() - started)
            if counts is None:
                raise RuntimeError("the sync failed; see the log above")
            again_apply.extend(spent)
            again_queries = queries[0]
        print(f"No-change sync: {counts}", flush=True)
    finally:
        raw_connection.unbind()
        adapter.close()
        connections_close_all()

    raw = median(raw_times)
    ratio = median(full_times) / raw

    def seconds(values: list[float]) -> str:
        return f"{median(values):.2f}"

    def runs(values: list[float]) -> str:
        return " / ".join(f"{value:.2f}" for value in values)

    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"\nSnapshot rows: {rows:,} entries, {members:,} group memberships "
          "(nesting and primary groups resolved)")
    return [
        ("measurement", "median s", "runs s", "× raw", "LDAP searches", "SQL queries"),
        ("raw ldap3 paged reads", seconds(raw_times), runs(raw_times), "1.00",
         str(raw_searches[0]), "-"),
        ("adapter snapshot()", seconds(snapshot_times), runs(snapshot_times),
         f"{median(snapshot_times) / raw:.2f}", str(adapter_searches[0]), "-"),
        ("full sync, empty snapshot", seconds(full_times), runs(full_times),
         f"{ratio:.2f}", str(sync_searches[0]), str(full_queries)),
        ("  of which snapshot_apply", seconds(full_apply), runs(full_apply),
         f"{median(full_apply) / raw:.2f}", "-", "-"),
        ("no-change sync", seconds(again_times), runs(again_times),
         f"{median(again_times) / raw:.2f}", str(again_searches[0]), str(again_queries)),
        ("  of which snapshot_apply", seconds(again_apply), runs(again_apply),
         f"{median(again_apply) / raw:.2f}", "-", "-"),
        (f"target: full sync ≤ {TARGET:.1f}× raw", "", "", f"{ratio:.2f}", verdict, ""),
    ]


def main() -> None:
    started = time.monotonic()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/blink")
    import django

    django.setup()
    from django.db import DatabaseError, connection

    if connection.vendor != "postgresql":
        raise SystemExit("DATABASE_URL must point at PostgreSQL (the sync's target).")
    scratch = f"blink_bench_{os.getpid()}"
    original_name = connection.settings_dict["NAME"]
    connection.settings_dict["TEST"]["NAME"] = scratch
    print(f"Creating and migrating the scratch database {scratch}…", flush=True)
    try:
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        with bench_dc(BenchDomain()) as dc:
            rows = measure(dc)
    finally:
        # Also after a failed migration: the database exists by then.
        connection.close()
        connection.settings_dict["NAME"] = scratch
        try:
            connection.creation.destroy_test_db(original_name, verbosity=0)
        except DatabaseError as error:  # never created; don't hide why the run failed
            print(f"Could not drop the scratch database {scratch}: {error}")
    print()
    print(table(rows))
    print(f"\nWhole run: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
