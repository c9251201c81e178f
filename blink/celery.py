"""The Celery application. Workers: ``celery -A blink worker``; beat: ``celery -A blink beat``."""

from __future__ import annotations

import os
from typing import Any

import kombu.exceptions
import redis.exceptions
from celery import Celery, Task
from celery.signals import task_postrun, task_prerun, worker_init
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "blink.settings")

# Raised by Celery and the Redis client when a task cannot be published (the broker is down).
PUBLISH_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError, redis.exceptions.RedisError, OSError,
)

app = Celery("blink")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The queues this process takes tasks from, when it is a worker; empty anywhere else (web,
# beat, shell, tests). Set once at start-up, after -Q is applied and before a prefork pool
# forks, so every child inherits it.
_consumed_queues: frozenset[str] = frozenset()


@worker_init.connect
def _consumed_queues_record(sender: Any, **_: object) -> None:
    """Remember which queues this worker consumes (``sender`` is its WorkController)."""
    global _consumed_queues
    _consumed_queues = frozenset(sender.app.amqp.queues.consume_from)


def worker_consumes(queue: str) -> bool:
    """Whether this process is a Celery worker that takes tasks from ``queue``."""
    return queue in _consumed_queues


def runs_here(queue: str) -> bool:
    """Whether a task for ``queue`` may be run in this process instead of published: it is
    a worker that takes tasks from that queue (so it can reach what they need) and runs
    them for real, not eagerly."""
    return worker_consumes(queue) and not app.conf.task_always_eager


@task_prerun.connect
@task_postrun.connect
def _database_connections_tidy(sender: Task, **_: object) -> None:
    """Around each task, as Django does around each request: close the database connections
    that failed or are older than CONN_MAX_AGE; the others stay open for the next task
    (settings.CELERY_DB_REUSE_MAX keeps Celery from closing them all). Eager tasks run
    inside their caller's request or transaction, which owns the connection."""
    if not getattr(sender.request, "is_eager", False):
        close_old_connections()
