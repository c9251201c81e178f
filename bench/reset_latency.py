"""Reset latency: a user's RESET text to their password SMS, vs one raw ldap3 password reset.

A Samba AD DC (the benchmark domain at 100 users, the first 51 with passwords) serves a
client whose Active Directory connection is synced; 50 of its users are Active Blink users
with phones. A real Celery worker (``celery -A blink worker -Q default,directory,sms``,
prefork, as docker-compose runs it) on Redis does the work and hands the SMS to the outbox
backend, which stands in for Twilio.

For each of the 50 users, one after the other:

- **raw**: one ldap3 modify as the service account on an open LDAPS connection,
  ``unicodePwd`` and ``pwdLastSet=0`` together: what any reset must at least cost;
- **Blink**: from just before this process POSTs Twilio's inbound-SMS webhook, "RESET" from
  the user's phone to the company's number, signed with TWILIO_AUTH_TOKEN for the company's
  site URL (``django.test.Client``, in this process), to the SMS carrying the temporary
  password handed to the provider (the outbox row's ``created_at``, written by the worker in
  ``SmsBackend.send``). The neutral reply ("If this number is registered…") goes to the same
  phone and is not what is timed. Every password is checked: a bind with it answers "must
  change password" (AD data 773).

The phases come from the rows' own timestamps: the ResetRequest's ``created_at``,
``started_at`` (the worker's claim) and ``directory_done_at``, and the outbox row's
``created_at``. A warm-up of each comes first and is not counted. Target: Blink's median at
most 1.5 times the raw median (p95 is shown against the raw p95 too). Run from the
repository root, as root (Samba needs it):

    .venv/bin/python bench/reset_latency.py [--pool solo]

DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/blink: a scratch database
(blink_bench_<pid>) is made next to it, migrated, and dropped at the end. REDIS_URL's server
(default 127.0.0.1:6379) is used at database 8, emptied before and after.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import ldap3
from _samba import ROOT, BenchDomain, SambaDC, bench_dc, bound, median, table, username

RESETS = 50
TARGET = 1.5
REDIS_DB = 8
PHONE_BASE = 14155560000
# The company's own Blink number, which the users text.
BLINK_NUMBER = "+14155550100"
SITE_URL = "https://blink.example"
INBOUND_PATH = "/sms/twilio/inbound"
# Only the password SMS says this; the neutral reply to the same phone does not.
RESET_SMS_SAYS = "temporary password"
WAIT_SECONDS = 60
POLL_SECONDS = 0.1
WORKER_READY_SECONDS = 30
# The benchmark domain's OUs and groups, with 100 users; the 51 reset need passwords (enabled).
DOMAIN = BenchDomain(users=100, password_users=RESETS + 1)


def p95(values: list[float]) -> float:
    """The 95th percentile, nearest rank."""
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def unicode_pwd(password: str) -> bytes:
    return f'"{password}"'.encode("utf-16-le")


def raw_reset(connection: ldap3.Connection, dn: str) -> float:
    """Seconds for one modify setting a new password that must be changed at next logon."""
    password = f"Raw-{secrets.token_urlsafe(12)}7!"
    started = time.perf_counter()
    connection.modify(dn, {"unicodePwd": [(ldap3.MODIFY_REPLACE, [unicode_pwd(password)])],
                           "pwdLastSet": [(ldap3.MODIFY_REPLACE, ["0"])]})
    seconds = time.perf_counter() - started
    if connection.result["result"] != 0:
        raise RuntimeError(f"raw reset of {dn} failed: {connection.result}")
    return seconds


def redis_url(db: int) -> str:
    parts = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    return urlunsplit(parts._replace(path=f"/{db}", query="", fragment=""))


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def worker_running(database: str, pool: str) -> Iterator[Worker]:
    """``celery -A blink worker`` on the bench's Redis database and scratch database."""
    from blink.celery import app

    parts = urlsplit(os.environ["DATABASE_URL"])
    nodename = f"blink-bench-{os.getpid()}@{socket.gethostname()}"
    log_path = Path(tempfile.mkdtemp(prefix="blink-bench-worker-")) / "worker.log"
    env = {**os.environ, "DATABASE_URL": urlunsplit(parts._replace(path="/" + quote(database))),
           "SMS_BACKEND": "sms.backends.outbox.SmsBackend", "PYTHONUNBUFFERED": "1"}
    env.pop("CELERY_BROKER_URL", None)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "blink", "worker", "--loglevel=WARNING",
             "-Q", "default,directory,sms", "-n", nodename, "--without-gossip",
             "--without-mingle", "--without-heartbeat", f"--pool={pool}"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    worker = Worker(process, log_path)
    try:
        deadline = time.monotonic() + WORKER_READY_SECONDS
        while not app.control.ping(destination=[nodename], timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"The Celery worker did not start. Its log:\n{worker.log()}")
        yield worker
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def blink_users_make(dc: SambaDC) -> list[tuple[Any, str]]:
    """A client on the DC, synced, with RESETS Active Blink users: (Blink user, upn)."""
    from blink.audit import SYSTEM
    from blink.models import BlinkUser
    from clients.models import Company
    from clients.services import client_create
    from directory.models import Entry
    from directory.services import connection_save, directory_sync

    company = Company.objects.create(name="Bench MSP", site_url=SITE_URL,
                                     sms_number=BLINK_NUMBER)
    client = client_create(company=company, actor=SYSTEM, name="Acme")
    connection = connection_save(
        client=client, actor=SYSTEM, kind="active_directory",
        parameters={"url": dc.url, "bind_user": dc.service_upn, "base_dn": dc.base_dn,
                    "ca_pem": dc.ca_pem},
        secrets={"bind_password": dc.service_password},
    )
    if directory_sync(connection_id=connection.pk, claimed=True) is None:
        raise SystemExit("The directory sync failed; see the log above.")
    users = []
    for i in range(RESETS + 1):  # the first is the warm-up
        entry = Entry.objects.get(connection=connection, kind="user", username=username(i))
        users.append((BlinkUser.objects.create(
            client=client, connection=connection, object_id=entry.object_id,
            username=entry.username, display_name=entry.name, phone=f"+{PHONE_BASE + i}",
            status=BlinkUser.Status.ACTIVE,
        ), entry.dn))
    return users


@dataclass
class Timing:
    total: float
    answered: float
    recorded: float
    queued: float
    directory: float
    sms: float


def reset_text(browser: Any, phone: str) -> Any:
    """POST Twilio's inbound-SMS webhook for "RESET" from ``phone``, signed as Twilio signs
    it: the form fields, with X-Twilio-Signature over the company's public URL."""
    from django.conf import settings
    from twilio.request_validator import RequestValidator

    sid = "SM" + secrets.token_hex(16)
    params = {
        "ToCountry": "US", "ToState": "", "SmsMessageSid": sid, "NumMedia": "0", "ToCity": "",
        "FromZip": "", "SmsSid": sid, "FromState": "", "SmsStatus": "received", "FromCity": "",
        "Body": "RESET", "FromCountry": "US", "To": BLINK_NUMBER, "ToZip": "",
        "NumSegments": "1", "MessageSid": sid, "AccountSid": settings.TWILIO_ACCOUNT_SID,
        "From": phone, "ApiVersion": "2010-04-01",
    }
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(
        SITE_URL + INBOUND_PATH, params)
    return browser.post(INBOUND_PATH, urlencode(params),
                        content_type="application/x-www-form-urlencoded",
                        headers={"X-Twilio-Signature": signature})


def blink_reset(blink_user: Any, dc: SambaDC, worker: Worker) -> Timing:
    """Seconds from the RESET text's webhook to the password SMS handed to the provider,
    with its parts."""
    from django.test import Client as Browser

    from blink.models import ResetRequest
    from sms.models import OutboxSms

    phone = str(blink_user.phone)
    browser = Browser()
    asked = time.time()
    response = reset_text(browser, phone)
    answered = time.time() - asked
    if response.status_code != 200:
        raise SystemExit(f"The inbound webhook answered {response.status_code}: "
                         f"{response.content[:300]!r}")
    deadline = time.monotonic() + WAIT_SECONDS
    # The times come from the rows' own timestamps; this loop only waits, and slowly
    # enough not to take the two cores from the worker, Samba and PostgreSQL.
    while (sms := OutboxSms.objects.filter(to=phone, body__contains=RESET_SMS_SAYS)
           .first()) is None:
        if time.monotonic() > deadline or worker.process.poll() is not None:
            request = ResetRequest.objects.filter(blink_user=blink_user).order_by("-pk").first()
            state = f"{request.status}: {request.reason}" if request else "no reset request"
            raise SystemExit(f"No password SMS for {blink_user.username} ({state}). "
                             f"Worker log:\n{worker.log()}")
        time.sleep(POLL_SECONDS)
    request = ResetRequest.objects.get(blink_user=blink_user, message__isnull=False)
    match = re.search(r"is:\n(\S+)\n", sms.body)
    assert match, "the SMS carries no password"
    ok, message = dc.try_bind(f"{blink_user.username}@blink.test", match.group(1))
    assert not ok and "data 773" in message, message

    def at(moment: datetime | None) -> float:
        assert moment is not None
        return moment.timestamp()

    return Timing(
        total=at(sms.created_at) - asked,
        answered=answered,
        recorded=at(request.created_at) - asked,
        queued=at(request.started_at) - at(request.created_at),
        directory=at(request.directory_done_at) - at(request.started_at),
        sms=at(sms.created_at) - at(request.directory_done_at),
    )


def measure(dc: SambaDC, database: str, pool: str) -> list[tuple[str, ...]]:
    users = blink_users_make(dc)
    raw_connection = bound(dc)
    raw_times: list[float] = []
    timings: list[Timing] = []
    try:
        with worker_running(database, pool) as worker:
            (warm_user, warm_dn), *measured = users
            raw_reset(raw_connection, warm_dn)
            blink_reset(warm_user, dc, worker)
            for blink_user, dn in measured:
                raw_times.append(raw_reset(raw_connection, dn))
                timings.append(blink_reset(blink_user, dc, worker))
    finally:
        raw_connection.unbind()

    def ms(value: float) -> str:
        return f"{value * 1000:.0f}"

    totals = [t.total for t in timings]
    ratio, ratio_p95 = median(totals) / median(raw_times), p95(totals) / p95(raw_times)
    rows: list[tuple[str, ...]] = [
        ("measurement", "median ms", "p95 ms", "× raw median", "× raw p95"),
        ("raw ldap3 modify (unicodePwd + pwdLastSet)", ms(median(raw_times)),
         ms(p95(raw_times)), "1.00", "1.00"),
        ("Blink: RESET webhook → SMS handed to the provider", ms(median(totals)),
         ms(p95(totals)), f"{ratio:.2f}", f"{ratio_p95:.2f}"),
    ]
    for label, values in [
        ("  webhook POST answered (in this process)", [t.answered for t in timings]),
        ("  POST → reset request recorded", [t.recorded for t in timings]),
        ("  recorded → worker claims it", [t.queued for t in timings]),
        ("  in the directory (policy, seal, reset)", [t.directory for t in timings]),
        ("  directory done → SMS handed over", [t.sms for t in timings]),
    ]:
        rows.append((label, ms(median(values)), ms(p95(values)),
                     f"{median(values) / median(raw_times):.2f}", ""))
    rows.append((f"target: median ≤ {TARGET}× raw", "", "", f"{ratio:.2f}",
                 "met" if ratio <= TARGET else "MISSED"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", choices=["prefork", "solo"], default="prefork",
                        help="the worker's pool: prefork (docker-compose's, the default) or "
                             "solo (one process, as the test suite's worker)")
    pool = parser.parse_args().pool
    started = time.monotonic()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/blink")
    os.environ["REDIS_URL"] = redis_url(REDIS_DB)
    # tests.settings then keeps the real broker (as in the worker) instead of running eagerly.
    os.environ["BLINK_TEST_WORKER"] = "true"
    # What this process signs the inbound webhooks with, and the web side checks them with.
    os.environ["TWILIO_ACCOUNT_SID"] = "AC" + secrets.token_hex(16)
    os.environ["TWILIO_AUTH_TOKEN"] = secrets.token_hex(16)
    import django

    django.setup()
    import redis
    from django.db import DatabaseError, connection

    if connection.vendor != "postgresql":
        raise SystemExit("DATABASE_URL must point at PostgreSQL (the worker shares it).")
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    scratch = f"blink_bench_{os.getpid()}"
    original_name = connection.settings_dict["NAME"]
    connection.settings_dict["TEST"]["NAME"] = scratch
    print(f"Creating and migrating the scratch database {scratch}…", flush=True)
    try:
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        with bench_dc(DOMAIN) as dc:
            rows = measure(dc, scratch, pool)
    finally:
        connection.close()
        connection.settings_dict["NAME"] = scratch
        try:
            connection.creation.destroy_test_db(original_name, verbosity=0)
        except DatabaseError as error:
            print(f"Could not drop the scratch database {scratch}: {error}")
        redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    print()
    print(table(rows))
    print(f"\n{RESETS} resets, one at a time; worker pool {pool}. "
          f"Whole run: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
