"""A worker keeps its database connection from task to task, as a web process keeps one from
request to request (CONN_MAX_AGE), and drops one that broke or grew too old. Celery's own
Django fix-up would close it around every task, so each task paid for a new connection."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from celery.fixups.django import DjangoWorkerFixup  # type: ignore[attr-defined]  # not in celery-types
from celery.signals import task_postrun, task_prerun
from django.db import connection

from blink.celery import app
from blink.tasks import worker_heartbeat
from tests.servers import unavailable

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    if connection.vendor != "postgresql":
        # SQLite's test database lives in memory, and Django never closes that.
        unavailable("Kept and dropped connections need PostgreSQL (set DATABASE_URL).")


@pytest.fixture
def task_runs() -> Callable[[], None]:
    """What a worker does around one task: Celery's Django fix-up, configured as Blink
    configures it, and every other handler of the task signals (Blink's among them)."""
    fixup = DjangoWorkerFixup(app)

    def run() -> None:
        fixup.on_task_prerun(sender=worker_heartbeat)
        task_prerun.send(sender=worker_heartbeat, task_id="t1", task=worker_heartbeat,
                         args=(), kwargs={})
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        fixup.on_task_postrun(sender=worker_heartbeat)
        task_postrun.send(sender=worker_heartbeat, task_id="t1", task=worker_heartbeat,
                          args=(), kwargs={}, retval=None, state="SUCCESS")

    return run


def test_the_next_task_reuses_the_connection(task_runs: Callable[[], None]) -> None:
    assert connection.settings_dict["CONN_MAX_AGE"] > 0  # blink.settings, with DATABASE_URL
    task_runs()
    kept = connection.connection
    assert kept is not None

    task_runs()

    assert connection.connection is kept


def test_a_broken_connection_is_dropped_after_its_task(task_runs: Callable[[], None]) -> None:
    task_runs()
    broken = connection.connection
    assert broken is not None
    broken.close()  # the server went away under it
    connection.errors_occurred = True

    task_postrun.send(sender=worker_heartbeat, task_id="t2", task=worker_heartbeat,
                      args=(), kwargs={}, retval=None, state="FAILURE")

    assert connection.connection is None
    task_runs()  # the next task connects afresh
    assert connection.connection is not None and connection.connection is not broken
