"""The Celery application. Workers: ``celery -A blink worker``; beat: ``celery -A blink beat``."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "blink.settings")

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
