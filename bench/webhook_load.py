"""Signed inbound SMS under load: Twilio's webhook against gunicorn, tasks queued (not run).

A scratch PostgreSQL database is created and migrated, and holds a company (its own Blink
number, its site URL on the benchmark's port) with a demo directory and a few Active Blink
users. ``gunicorn blink.wsgi -w 3`` (as the Dockerfile runs it) serves it with DEBUG off,
its cache and Celery broker on a Redis database of the benchmark's own (emptied before and
after), so every text the webhook takes is QUEUED to Redis and nothing consumes it. Then N
signed POSTs of Twilio's incoming message webhook, each with its own MessageSid, bodies
RESET and HELP, from the users' phones and from unknown numbers, go out from a thread pool
on loopback (built and signed before the clock starts). It reports requests/s,
p50/p99 latency and errors, and drops the database at the end.

Targets (this 2-core machine): >= 300 requests/s, p99 < 100 ms, no errors.
Run from the repository root with PostgreSQL and Redis up:

    .venv/bin/python bench/webhook_load.py [--requests 3000] [--concurrency 8]

DATABASE_URL (only its server is used) and REDIS_URL (only its server; database 9 is
used) default to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
import redis
import requests
from _samba import table
from cryptography.fernet import Fernet
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_RPS = 300
TARGET_P99_MS = 100
REDIS_DB = 9
WORKERS = 3  # as the Dockerfile and docker-compose run it
BLINK_NUMBER = "+14155550100"
USERS = 5
STRANGERS = 500
WARM_UP = 100
# Bounds: the run never sends more than this, nor for longer.
MAX_REQUESTS = 20_000
MAX_SECONDS = 120
READY_SECONDS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_url(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def environment(database_url: str, redis_url: str, port: int) -> dict[str, str]:
    """What gunicorn (and this process's Django, for seeding) runs with: production mode."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "blink.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "BLINK_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SMS_BACKEND": "sms.backends.twilio.SmsBackend",
        "TWILIO_ACCOUNT_SID": "AC" + secrets.token_hex(16),
        "TWILIO_AUTH_TOKEN": secrets.token_hex(16),
        "BLINK_SITE_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
    }


def database_create(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def database_drop(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(port: int) -> list[str]:
    """Migrate the scratch database and give it a company with Active Blink users; their
    phones. Runs in this process with the benchmark's environment already applied."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from blink.audit import SYSTEM
    from blink.models import BlinkUser
    from clients.models import Company
    from clients.services import client_create
    from directory.demo import demo_directory_seed
    from directory.models import Entry
    from directory.services import connection_save, directory_sync

    company = Company.objects.create(name="Bench MSP", site_url=f"http://127.0.0.1:{port}",
                                     sms_number=BLINK_NUMBER)
    client = client_create(company=company, actor=SYSTEM, name="Bench Client")
    connection = connection_save(client=client, actor=SYSTEM, kind="demo", parameters={},
                                 secrets={})
    demo_directory_seed(connection)
    directory_sync(connection_id=connection.pk, claimed=True)
    entries = Entry.objects.filter(connection=connection, kind="user", enabled=True,
                                   protected=False).order_by("username")[:USERS]
    phones = [f"+1415555{2000 + n:04d}" for n in range(USERS)]
    for entry, phone in zip(entries, phones, strict=True):
        BlinkUser.objects.create(client=client, connection=connection,
                                 object_id=entry.object_id, username=entry.username,
                                 display_name=entry.name, phone=phone, status="active")
    from django.db import connections

    connections.close_all()
    return phones


def gunicorn_start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "blink.wsgi", "-w", str(WORKERS),
             "-b", f"127.0.0.1:{port}", "--access-logfile", "-"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited ({process.returncode}):\n{log.read_text()}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code < 600:
                return process
        except requests.RequestException:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"gunicorn did not answer within {READY_SECONDS} s:\n{log.read_text()}")


class Sender:
    """Signed inbound-SMS webhooks, as Twilio posts them."""

    def __init__(self, port: int, token: str, account: str, phones: list[str]) -> None:
        self.port = port
        self.path = "/sms/twilio/inbound"
        self.url = f"http://127.0.0.1:{port}{self.path}"
        self.validator = RequestValidator(token)
        self.account = account
        self.users = phones
        self.strangers = [f"+1415556{n:04d}" for n in range(STRANGERS)]

    def sender_of(self, index: int) -> str:
        """One text in four from a Blink user (their resets run into the send caps soon,
        as a user texting again and again would), the rest from unknown numbers."""
        if index % 4 == 0:
            return self.users[(index // 4) % len(self.users)]
        return self.strangers[index % len(self.strangers)]

    def form(self, index: int) -> tuple[str, str]:
        sid = "SM" + secrets.token_hex(16)
        params = {
            "ToCountry": "US", "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid,
            "SmsStatus": "received", "Body": "RESET" if index % 3 != 2 else "HELP",
            "FromCountry": "US", "To": BLINK_NUMBER, "NumSegments": "1", "MessageSid": sid,
            "AccountSid": self.account, "From": self.sender_of(index),
            "ApiVersion": "2010-04-01",
        }
        return urlencode(params), self.validator.compute_signature(self.url, params)

    def request(self, index: int) -> bytes:
        """The whole HTTP request for text ``index``, signed, ready to write."""
        body, signature = self.form(index)
        return (f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"X-Twilio-Signature: {signature}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode()

    def send(self, request: bytes) -> tuple[float, int]:
        """POST one webhook on a fresh connection (gunicorn's sync workers close each
        one) over a plain socket: seconds and HTTP status."""
        started = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                sock.sendall(request)
                response = b""
                while chunk := sock.recv(4096):  # the worker closes after its answer
                    response += chunk
            status = int(response[9:12])
        except (OSError, ValueError):
            status = 0
        return time.perf_counter() - started, status


def load(sender: Sender, count: int, concurrency: int) -> tuple[list[float], list[int], float]:
    """Send ``count`` webhooks from ``concurrency`` threads: latencies, statuses, seconds.

    Every request is built and signed before the clock starts and written to a plain
    socket, so the load generator takes as little as it can of the two cores it shares
    with gunicorn (threads on http.client, signing as they went, took about 1.1 ms of
    CPU a request: a fifth of the machine at 300 requests/s)."""
    requests_ = [sender.request(index) for index in range(count)]
    deadline = time.monotonic() + MAX_SECONDS

    def worker(slot: int) -> list[tuple[float, int]]:
        results = []
        for request in requests_[slot::concurrency]:
            if time.monotonic() > deadline:
                break
            results.append(sender.send(request))
        return results

    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        chunks = list(pool.map(worker, range(concurrency)))
    elapsed = time.perf_counter() - started
    print(f"(load generator: {(time.process_time() - cpu) / max(count, 1) * 1000:.2f} ms CPU "
          "a request)", file=sys.stderr)
    flat = [result for chunk in chunks for result in chunk]
    return [latency for latency, _ in flat], [status for _, status in flat], elapsed


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used so far (Linux /proc; 0 where unreadable)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def server_pids(admin_url: str, database: str, master: int) -> tuple[list[int], list[int]]:
    """The gunicorn workers and the PostgreSQL backends serving the benchmark's database,
    so their CPU per request can be told apart from whatever else the machine runs."""
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                workers.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    with psycopg.connect(admin_url, autocommit=True) as conn:
        backends = [row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))]
    return workers, backends



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    count = max(1, min(args.requests, MAX_REQUESTS))

    base = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    admin_url = server_url(base, "postgres")
    database = f"blink_bench_webhook_{os.getpid()}"
    redis_url = server_url(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
                           str(REDIS_DB))
    broker = redis.Redis.from_url(redis_url)
    broker.flushdb()
    port = free_port()
    env = environment(server_url(base, database), redis_url, port)
    log = ROOT / "var" / "bench-webhook-gunicorn.log"
    log.parent.mkdir(exist_ok=True)

    database_create(admin_url, database)
    process: subprocess.Popen[bytes] | None = None
    try:
        os.environ.update(env)
        phones = seed(port)
        process = gunicorn_start(env, port, log)
        sender = Sender(port, env["TWILIO_AUTH_TOKEN"], env["TWILIO_ACCOUNT_SID"], phones)
        load(sender, WARM_UP, args.concurrency)
        workers, backends = server_pids(admin_url, database, process.pid)
        cpu_before = cpu_seconds(workers), cpu_seconds(backends)
        latencies, statuses, elapsed = load(sender, count, args.concurrency)
        cpu_used = (cpu_seconds(workers) - cpu_before[0], cpu_seconds(backends) - cpu_before[1])
        queued = {queue: cast(int, broker.llen(queue)) for queue in ("sms", "directory")}
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        broker.flushdb()
        database_drop(admin_url, database)

    errors = sum(1 for status in statuses if status != 200)
    sent = len(latencies)
    rps = sent / elapsed
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    p50, p99 = cuts[49] * 1000, cuts[98] * 1000
    print(f"\n{sent} signed inbound webhooks ({count} asked; RESET/HELP, {USERS} users and "
          f"{STRANGERS} unknown numbers), {args.concurrency} client threads, gunicorn -w "
          f"{WORKERS}, {os.cpu_count()} CPUs; tasks left queued in Redis: "
          f"{queued['sms']} sms, {queued['directory']} directory")
    print(f"server CPU a request: {cpu_used[0] / sent * 1000:.2f} ms in {len(workers)} gunicorn "
          f"workers, {cpu_used[1] / sent * 1000:.2f} ms in {len(backends)} PostgreSQL "
          "backends\n")
    print(table([
        ("measure", "result", "target", "met"),
        ("requests/s", f"{rps:.0f}", f">= {TARGET_RPS}", "yes" if rps >= TARGET_RPS else "NO"),
        ("p50 latency", f"{p50:.1f} ms", "", ""),
        ("p99 latency", f"{p99:.1f} ms", f"< {TARGET_P99_MS} ms",
         "yes" if p99 < TARGET_P99_MS else "NO"),
        ("errors", f"{errors} ({sorted(set(statuses) - {200}) or 'none'})", "0",
         "yes" if errors == 0 else "NO"),
    ]))


if __name__ == "__main__":
    main()
