"""Blink User Setup on a 10,000-user directory: server time, bytes and queries.

A snapshot of 10,000 users in 500 nested OUs (10 top-level OUs, 7 below each, 6 below
each of those; 20 users in every bottom OU and 1,600 directly in one top-level OU) and
50 groups (one with everyone) is written straight into the snapshot tables, with 500 of
the users already Blink users. A signed-in owner then asks, through Django's test
client (so the figures are the server's time: URL routing, middleware, queries and
template rendering, no network), for:

- the first paint, by OU and by group;
- opening a bottom OU (20 users), the 1,600-user OU and the 10,000-member group (each
  first page: 250 users);
- Expand All (every node's first page in one response), by OU and by group;
- a search, and the Blink Users list;
- Blink Users on one bottom OU (about 20 invitations: rows, audit events, queued
  emails), and once on the big OU (about 2,300): the invitation service writes each user
  on its own, so this one grows with the ticked users.

Each is the median of 10 runs after one warm-up. Queries are counted on the same
requests against a 60-user directory too, to show they do not grow. Target: < 300 ms
and a constant number of queries for the first paint and for opening a subtree.

Run from the repository root (under a minute on a laptop):

    .venv/bin/python bench/setup_page.py

It uses a scratch SQLite file in a temporary directory, or, when DATABASE_URL is set,
a scratch PostgreSQL database made next to it (test_<name>); both are removed at the end.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from _samba import table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUNS = 10
TARGET_MS = 300.0
USERS = 10_000


def snapshot_build(*, big: bool) -> Any:
    """The directory: 10,000 users in 500 OUs and 50 groups, or a 60-user miniature."""
    from directory.base import DirectoryUser, Group, OrgUnit, Snapshot

    base = "DC=bench,DC=example"
    rng = random.Random(4)  # noqa: S311 - a repeatable sample, not a secret
    tops, middles, bottoms = (10, 7, 6) if big else (2, 2, 2)
    per_bottom, in_top = (20, 1_600) if big else (5, 20)
    org_units: list[OrgUnit] = []
    users: list[DirectoryUser] = []

    def user_add(parent: OrgUnit) -> None:
        n = len(users)
        name = f"Person {n:05d}"
        users.append(DirectoryUser(
            object_id=f"{n:08d}-0000-4000-8000-{n:012d}", username=f"person{n:05d}",
            upn=f"person{n:05d}@bench.example", display_name=name, given_name="Person",
            surname=f"{n:05d}", email="" if n % 13 == 5 else f"person{n:05d}@bench.example",
            enabled=n % 97 != 3, protected=n % 1000 == 7, dn=f"CN={name},{parent.dn}",
            parent_dn=parent.dn,
        ))

    for t in range(tops):
        top = OrgUnit(f"ou-{t}", f"Region {t:02d}", f"OU=Region {t:02d},{base}", base)
        org_units.append(top)
        if t == 0:
            for _ in range(in_top):
                user_add(top)
        for m in range(middles):
            middle = OrgUnit(f"ou-{t}-{m}", f"Site {t:02d}.{m}", f"OU=Site {m},{top.dn}",
                             top.dn)
            org_units.append(middle)
            for b in range(bottoms):
                bottom = OrgUnit(f"ou-{t}-{m}-{b}", f"Team {t:02d}.{m}.{b}",
                                 f"OU=Team {b},{middle.dn}", middle.dn)
                org_units.append(bottom)
                for _ in range(per_bottom):
                    user_add(bottom)
    ids = [user.object_id for user in users]
    groups = [Group("g-all", "All Staff", f"CN=All Staff,{base}", base,
                    member_ids=frozenset(ids))]
    for g in range(49 if big else 3):
        size = rng.randint(50, 600) if big else 10
        groups.append(Group(f"g-{g}", f"Group {g:02d}", f"CN=Group {g:02d},{base}", base,
                            member_ids=frozenset(rng.sample(ids, size))))
    return Snapshot(org_units=org_units, groups=groups, users=users)


def directory_make(company: Any, name: str, *, big: bool) -> Any:
    from blink.audit import SYSTEM
    from blink.models import BlinkUser
    from clients.services import client_create
    from directory.models import Connection, Entry
    from directory.services import snapshot_apply

    client = client_create(company=company, actor=SYSTEM, name=name)
    connection = Connection.objects.create(client=client, kind=Connection.Kind.ACTIVE_DIRECTORY,
                                           parameters={"url": "ldaps://dc.bench.example"})
    started = time.perf_counter()
    snapshot = snapshot_build(big=big)
    snapshot_apply(connection=connection, snapshot=snapshot)
    existing = Entry.objects.filter(connection=connection, kind=Entry.Kind.USER,
                                    enabled=True, protected=False).order_by("pk")[::20]
    BlinkUser.objects.bulk_create([
        BlinkUser(client=client, connection=connection, object_id=entry.object_id,
                  username=entry.username, display_name=entry.name, email=entry.email,
                  status=BlinkUser.Status.ACTIVE if n % 2 else BlinkUser.Status.INVITED)
        for n, entry in enumerate(existing)
    ])
    print(f"{name}: {len(snapshot.users):,} users, {len(snapshot.org_units)} OUs, "
          f"{len(snapshot.groups)} groups, {len(existing)} Blink users "
          f"(built in {time.perf_counter() - started:.1f} s)", flush=True)
    return client


def requests_for(client: Any) -> dict[str, str]:
    from directory.models import Entry

    def pk(kind: str, name: str) -> int:
        return Entry.objects.get(connection__client=client, kind=kind, name=name).pk

    bottom = Entry.objects.filter(connection__client=client, kind="ou",
                                  name__startswith="Team").order_by("name").first()
    assert bottom is not None
    setup = "/setup/"
    return {
        "First paint, by OU": f"{setup}?client={client.pk}&view=ou",
        "First paint, by group": f"{setup}?client={client.pk}&view=groups",
        f"Open a bottom OU ({bottom.name})": f"{setup}{client.pk}/node?node=ou-{bottom.pk}",
        "Open the big OU (Region 00)": f"{setup}{client.pk}/node?node=ou-"
                                       f"{pk('ou', 'Region 00')}",
        "Open the big group (All Staff)": f"{setup}{client.pk}/node?node=group-"
                                          f"{pk('group', 'All Staff')}",
        "Expand All, by OU": f"{setup}{client.pk}/expand?view=ou",
        "Expand All, by group": f"{setup}{client.pk}/expand?view=groups",
        "Search (\"person0012\")": f"{setup}{client.pk}/search?q=person0012",
        "Blink Users list, page 1": f"/users/?client={client.pk}",
    }


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def queries_of(call: Callable[[], Any]) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as context:
        call()
    return len(context.captured_queries)


def measure(browser: Any, big: Any, small: Any) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    small_paths = list(requests_for(small).values())
    for (label, path), small_path in zip(requests_for(big).items(), small_paths, strict=True):
        response = browser.get(path)  # warm-up
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}")
        times = [timed(partial(browser.get, path)) for _ in range(RUNS)]
        queries = queries_of(partial(browser.get, path))
        small_queries = queries_of(partial(browser.get, small_path))
        median = statistics.median(times)
        rows.append((label, f"{median:.0f}", f"{min(times):.0f}–{max(times):.0f}",
                     f"{len(response.content) / 1024:,.0f} kB", f"{queries} / {small_queries}",
                     "yes" if median < TARGET_MS and queries == small_queries else "NO"))
        print(f"  {label}: {median:.0f} ms", flush=True)
    return rows


def measure_add(browser: Any, client: Any) -> list[tuple[str, ...]]:
    """Blink Users on one bottom OU (each run another OU), then once on a whole region.

    The activation email task is only enqueued, as on a production web process (the
    trial runs it in-process, which is the worker's time, not the page's).
    """
    from unittest import mock

    from blink import tasks
    from blink.models import BlinkUser
    from directory.models import Entry

    def post(ou: Entry) -> None:
        response = browser.post(f"/setup/{client.pk}/add", {"ou": ou.pk})
        assert response.status_code == 302

    teams = list(Entry.objects.filter(connection__client=client, kind="ou",
                                      name__startswith="Team").order_by("name")[1:RUNS + 3])
    region = Entry.objects.get(connection__client=client, kind="ou", name="Region 00")
    with mock.patch.object(tasks.activation_email_send, "delay"):
        post(teams[0])  # warm-up
        queries = queries_of(partial(post, teams[1]))
        times: list[float] = []
        added = 0
        for team in teams[2:]:
            before = BlinkUser.objects.filter(client=client).count()
            times.append(timed(partial(post, team)))
            added += BlinkUser.objects.filter(client=client).count() - before
        before = BlinkUser.objects.filter(client=client).count()
        # Timed and counted in one run: counting adds little next to ~2,000 invitations.
        region_timing: list[float] = []
        region_queries = queries_of(lambda: region_timing.append(timed(partial(post, region))))
        region_added = BlinkUser.objects.filter(client=client).count() - before
    median = statistics.median(times)
    return [
        (f"Blink Users on a bottom OU ({added / len(times):.0f} invited)", f"{median:.0f}",
         f"{min(times):.0f}–{max(times):.0f}", "redirect", f"{queries}", "—"),
        (f"Blink Users on the big OU ({region_added:,} invited, 1 run)",
         f"{region_timing[0]:.0f}", "—", "redirect", f"{region_queries:,}", "—"),
    ]


def results_table(rows: list[tuple[str, ...]]) -> str:
    head = ("request", "median ms", "range ms", "bytes", "queries 10k / 60",
            f"< {TARGET_MS:.0f} ms, constant")
    return table([head, *rows])


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="blink-bench-setup-"))
    try:
        run(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(scratch: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ["BLINK_VAR_DIR"] = str(scratch)
    import logging

    import django
    from django.conf import settings

    django.setup()
    from django.db import connection

    logging.disable(logging.INFO)  # one line per invitation otherwise
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        database["TEST"]["NAME"] = str(scratch / "bench.sqlite3")
    original_name = database["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    engine = connection.vendor
    try:
        from django.contrib.auth import get_user_model
        from django.test import Client as Browser

        from clients.services import company_create

        owner = get_user_model().objects.create_user(username="bench-owner")
        company = company_create(name="Bench MSP", site_url="https://blink.bench.example",
                                 owner=owner)
        big = directory_make(company, "Big Corp", big=True)
        small = directory_make(company, "Small Co", big=False)
        if engine == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        browser = Browser()
        browser.force_login(owner, backend="django.contrib.auth.backends.ModelBackend")
        rows = measure(browser, big, small)
        rows += measure_add(browser, big)
        print(f"\nBlink User Setup, {USERS:,} users in 500 OUs, 50 groups ({engine}; "
              f"median of {RUNS}; Python {sys.version.split()[0]})\n")
        print(results_table(rows))
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0)


if __name__ == "__main__":
    main()
