"""A real Celery worker on Redis, reading and writing the test database.

The worker is a separate process, so it needs a database server it can reach
(PostgreSQL, from DATABASE_URL) and sees only committed rows: tests that use it
take ``transactional_db``. It consumes a Redis database of its own (15 on the
REDIS_URL server, or on 127.0.0.1:6379), which is emptied first.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import redis
from django.db import connection
from pytest_django.fixtures import Settings

from blink.celery import app
from blink.models import BlinkUser
from directory.models import Connection, Entry
from directory.services import directory_sync
from tests.broker import broker_url, publishing_to
from tests.fixtures.samba import SeededUser
from tests.servers import unavailable

PROJECT_DIR = Path(__file__).resolve().parents[2]
# Redis databases 0-15 exist by default; 15 is the one the tests may empty.
# Redis databases, one per user, as each empties its own: 15 the session's worker, 14
# test_reset_samba, 13 test_sms_reset_samba, 12 test_send_caps_redis, 11 the e2e reset
# journey, 10 tests.broker.Broker; the benchmarks use 9 (webhook_load) and 8 (reset_latency).
TEST_REDIS_DB = 15
WORKER_READY_SECONDS = 30


def broker_url_for_tests() -> str:
    """The Redis database the worker and the tests share: db 15 of REDIS_URL's server."""
    return broker_url(TEST_REDIS_DB)


@contextmanager
def tasks_sent_to(worker: CeleryWorker, settings: Settings) -> Iterator[None]:
    """For one test: this process (and its live server) publishes its tasks to ``worker``
    instead of running them in-process."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    with publishing_to(worker.broker_url):
        yield


@dataclass
class CeleryWorker:
    process: subprocess.Popen[bytes]
    nodename: str
    broker_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _worker_database_url(test_database: str) -> str:
    """DATABASE_URL with its database swapped for the one pytest-django created."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + quote(test_database)))


def _worker_wait_ready(worker: CeleryWorker) -> None:
    deadline = time.monotonic() + WORKER_READY_SECONDS
    with publishing_to(worker.broker_url):
        while time.monotonic() < deadline:
            if worker.process.poll() is not None:
                pytest.fail(
                    f"The Celery worker exited with code {worker.process.returncode} "
                    f"before it was ready. Its log:\n{worker.log()}"
                )
            if app.control.ping(destination=[worker.nodename], timeout=0.5):
                return
    pytest.fail(
        f"The Celery worker did not answer a ping within {WORKER_READY_SECONDS} s. "
        f"Its log:\n{worker.log()}"
    )


def twilio_worker_env(fake: Any) -> dict[str, str]:
    """Settings that make a worker send SMS through the Twilio stand-in ``fake``."""
    return {
        "SMS_BACKEND": "sms.backends.twilio.SmsBackend",
        "TWILIO_ACCOUNT_SID": fake.account_sid,
        "TWILIO_AUTH_TOKEN": fake.auth_token,
        "TWILIO_API_BASE": fake.origin,
        "TWILIO_CA_BUNDLE": fake.ca_bundle,
        "TWILIO_TIMEOUT": "5",
    }


@contextmanager
def celery_worker_started(
    *, redis_db: int, name: str, log_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[CeleryWorker]:
    """``celery -A blink worker`` on Redis database ``redis_db`` and the test database.

    Fails, saying what is missing, without PostgreSQL or Redis. The Redis database is emptied
    before and after. ``env`` adds settings, e.g. ``twilio_worker_env(...)``.
    """
    if connection.vendor != "postgresql" or not os.environ.get("DATABASE_URL"):
        unavailable(
            "The Celery worker tests need PostgreSQL: the worker is another process and "
            "must see the test database. Set DATABASE_URL=postgres://postgres@127.0.0.1:5432/blink."
        )
    broker_url = urlunsplit(urlsplit(broker_url_for_tests())._replace(path=f"/{redis_db}"))
    try:
        redis.Redis.from_url(broker_url, socket_connect_timeout=2).flushdb()
    except redis.RedisError as error:
        unavailable(f"The Celery worker tests need Redis at {broker_url}: {error}")

    nodename = f"{name}-{redis_db}-{os.getpid()}@%h"
    log_path = log_dir / "worker.log"
    worker_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _worker_database_url(connection.settings_dict["NAME"]),
        "REDIS_URL": broker_url,
        "PYTHONUNBUFFERED": "1",
        # tests.settings runs tasks in-process unless it is loaded by this worker.
        "BLINK_TEST_WORKER": "true",
        **(env or {}),
    }
    worker_env.pop("CELERY_BROKER_URL", None)  # it would win over REDIS_URL
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "blink", "worker",
                "--pool=solo", "-Q", "default,directory,sms", "-n", nodename, "--loglevel=INFO",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            cwd=PROJECT_DIR, env=worker_env, stdout=log, stderr=subprocess.STDOUT,
        )
    worker = CeleryWorker(
        process=process,
        nodename=nodename.replace("%h", socket.gethostname()),
        broker_url=broker_url,
        log_path=log_path,
    )
    try:
        _worker_wait_ready(worker)
        yield worker
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        redis.Redis.from_url(broker_url, socket_connect_timeout=2).flushdb()


@pytest.fixture(scope="session")
def celery_worker_process(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryWorker]:
    """The session's worker on the test broker (Redis db 15) and the test database.

    Depending on ``django_db_setup`` makes the worker stop before the test
    database is dropped (PostgreSQL refuses to drop a database in use).
    """
    with celery_worker_started(redis_db=TEST_REDIS_DB, name="blink-tests",
                               log_dir=tmp_path_factory.mktemp("celery")) as worker:
        yield worker


@pytest.fixture
def celery_worker(
    celery_worker_process: CeleryWorker, transactional_db: None, settings: Settings
) -> Iterator[CeleryWorker]:
    """The running worker, with this process publishing tasks to it for the test.

    The worker sees only committed rows, hence ``transactional_db``.
    """
    with tasks_sent_to(celery_worker_process, settings):
        yield celery_worker_process


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Show the worker's log under any failing test that used it."""
    report = yield
    worker = getattr(item, "funcargs", {}).get("celery_worker")
    if report.failed and isinstance(worker, CeleryWorker):
        report.sections.append(("Celery worker log", worker.log()))
    return report


@contextmanager
def twilio_worker_running(fake: Any, *, redis_db: int, log_dir: Path,
                          name: str = "blink-twilio") -> Iterator[CeleryWorker]:
    """A worker on Redis database ``redis_db`` that texts through the Twilio stand-in
    ``fake`` (the session's worker keeps the outbox backend)."""
    with celery_worker_started(redis_db=redis_db, name=name, log_dir=log_dir,
                               env=twilio_worker_env(fake)) as worker:
        yield worker


def active_blink_user(connection: Connection, person: SeededUser, phone: str) -> BlinkUser:
    """``person`` (a seeded Samba user) as an Active Blink user with ``phone``, after a
    sync has given them a snapshot entry."""
    assert directory_sync(connection_id=connection.pk, claimed=True) is not None
    entry = Entry.objects.get(connection=connection, kind="user", object_id=person.object_id)
    return BlinkUser.objects.create(
        client=connection.client, connection=connection, object_id=entry.object_id,
        username=entry.username, display_name=entry.name, email=entry.email, phone=phone,
        status=BlinkUser.Status.ACTIVE,
    )
