"""Lockout polling at 10,000 users: ``ActiveDirectory.locked_out`` vs one raw search.

A Samba AD DC with 10,000 users (the directory_sync bench's domain) is seeded and 100 of
its users are locked by failed LDAPS binds past the domain's lockout threshold. Then,
each median of 5 runs: ``locked_out`` for all 10,000 users' object ids, and a raw ldap3
paged search ``(&(objectCategory=person)(objectClass=user)(lockoutTime>=1))`` asking for
the same attributes. The LDAP search requests of a poll are counted (every page is one).

Targets: 1 search per directory per poll; a poll at most 1.3 times the raw search.
Run from the repository root (no database needed):

    .venv/bin/python bench/lockout_poll.py
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from _samba import (
    BenchDomain,
    SambaDC,
    SeededUser,
    bench_dc,
    bound,
    median,
    paged_search,
    searches_counted,
    table,
    timed,
    username,
)

LOCKED = 100
RUNS = 5
TARGET_RATIO = 1.3
TARGET_SEARCHES = 1
RAW_FILTER = "(&(objectCategory=person)(objectClass=user)(lockoutTime>=1))"
# What locked_out asks for (directory/activedirectory.py).
ATTRIBUTES = ["objectGUID", "lockoutTime", "msDS-ResultantPSO", "lockoutDuration",
              "msDS-LockoutDuration"]


def users_lock(dc: SambaDC, users: list[SeededUser], threshold: int) -> float:
    """Lock ``users`` with ``threshold`` wrong-password binds each; the seconds it took."""

    def lock(user: SeededUser) -> None:
        for _ in range(threshold):
            ok, _message = dc.try_bind(user.upn, "not-the-password")
            assert not ok, f"{user.upn} signed in with a wrong password"

    started = time.perf_counter()
    # A few binds at a time: Samba serves them from one process.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lock, users))
    return time.perf_counter() - started


def bench_user_ids(dc: SambaDC) -> dict[str, str]:
    """sAMAccountName → object id (Blink's form) of every seeded bench user."""
    connection = bound(dc)
    try:
        entries = paged_search(connection, dc.base_dn, "(&(objectCategory=person)"
                               "(objectClass=user)(sAMAccountName=u*))",
                               ["objectGUID", "sAMAccountName"])
    finally:
        connection.unbind()
    return {
        e["raw_attributes"]["sAMAccountName"][0].decode():
            str(uuid.UUID(bytes_le=e["raw_attributes"]["objectGUID"][0]))
        for e in entries
    }


def measure(dc: SambaDC, domain: BenchDomain) -> list[tuple[str, ...]]:
    from directory.activedirectory import ActiveDirectory

    ids = bench_user_ids(dc)
    assert len(ids) == domain.users, f"found {len(ids)} bench users"
    victims = [dc.users[username(i)] for i in range(LOCKED)]
    seconds = users_lock(dc, victims, domain.lockout_threshold)
    print(f"Locked {LOCKED} users with {LOCKED * domain.lockout_threshold} failed binds "
          f"in {seconds:.1f} s", flush=True)
    expected = {ids[user.username] for user in victims}

    adapter = ActiveDirectory(dc.ad_settings())
    raw_connection = bound(dc)
    object_ids = list(ids.values())
    try:
        # Warm both (the adapter opens its connection here) and check what they find.
        found = adapter.locked_out(object_ids)
        assert set(found) == expected, f"locked_out found {len(found)} of {LOCKED}"
        raw = paged_search(raw_connection, dc.base_dn, RAW_FILTER, ATTRIBUTES)
        assert len(raw) == LOCKED, f"the raw search found {len(raw)} of {LOCKED}"

        poll_times: list[float] = []
        raw_times: list[float] = []
        poll_searches: list[int] = []
        raw_searches: list[int] = []
        for _ in range(RUNS):
            with searches_counted() as count:
                poll_times.append(timed(lambda: adapter.locked_out(object_ids)))
            poll_searches.append(count[0])
            with searches_counted() as count:
                raw_times.append(timed(lambda: paged_search(raw_connection, dc.base_dn,
                                                            RAW_FILTER, ATTRIBUTES)))
            raw_searches.append(count[0])
    finally:
        raw_connection.unbind()
        adapter.close()

    ratio = median(poll_times) / median(raw_times)
    searches = max(poll_searches)

    def runs(values: list[float]) -> str:
        return " / ".join(f"{value * 1000:.0f}" for value in values)

    return [
        ("measurement", "median ms", "runs ms", "× raw", "LDAP searches"),
        ("raw ldap3 paged search", f"{median(raw_times) * 1000:.0f}", runs(raw_times),
         "1.00", str(max(raw_searches))),
        (f"locked_out({len(object_ids):,} ids)", f"{median(poll_times) * 1000:.0f}",
         runs(poll_times), f"{ratio:.2f}", str(searches)),
        (f"target: ≤ {TARGET_SEARCHES} search per poll", "", "", "",
         "met" if searches <= TARGET_SEARCHES else "MISSED"),
        (f"target: poll ≤ {TARGET_RATIO}× raw", "", "", f"{ratio:.2f}",
         "met" if ratio <= TARGET_RATIO else "MISSED"),
    ]


def main() -> None:
    started = time.monotonic()
    domain = BenchDomain(password_users=LOCKED)
    with bench_dc(domain) as dc:
        rows = measure(dc, domain)
    print()
    print(table(rows))
    print(f"\nWhole run: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
