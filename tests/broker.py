"""Celery publishing in tests, on a real Redis.

``publishing_to`` sends this process's tasks to a broker instead of running them in-process.
``Broker`` is a Redis database no worker consumes: a test publishes to it for real and reads
back what Blink queued (task, arguments, queue, countdown), or runs those tasks itself, in
order. ``unreachable_broker`` is Redis down: a closed port, so publishing fails the way it
does in production.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from django.utils import timezone

from blink.celery import app

# Nothing listens on port 1: connecting is refused at once.
UNREACHABLE_BROKER_URL = "redis://127.0.0.1:1/0"
# The Redis database of Broker (see tests/integration/conftest.py for the others).
BROKER_REDIS_DB = 10


def _producer_pools_reset() -> None:
    # Celery keeps the connection and producer pools of the first broker it
    # published to; forget them so the next message goes to the current broker_url.
    # (kombu keeps the pools themselves, per URL, and reuses them; closing one
    # here would break the next use of that URL.)
    app._pool = None  # type: ignore[attr-defined]
    app.amqp._producer_pool = None  # type: ignore[attr-defined]


@contextmanager
def publishing_to(broker_url: str) -> Iterator[None]:
    """Make this process's Celery app send tasks to ``broker_url`` instead of running them.
    Nested, the outer broker is back when the inner block ends."""
    keys = ("broker_url", "task_always_eager")
    changes = app.conf.changes or {}
    outer = {key: changes[key] for key in keys if key in changes}
    app.conf.update(broker_url=broker_url, task_always_eager=False)
    _producer_pools_reset()
    try:
        yield
    finally:
        # Celery reads Django's settings live; dropping the overrides (rather than
        # writing back values read mid-test) hands control back to tests.settings,
        # or to an enclosing publishing_to.
        overrides = app.conf.changes or {}
        for key in keys:
            overrides.pop(key, None)
        if outer:
            app.conf.update(outer)
        _producer_pools_reset()



@contextmanager
def unreachable_broker() -> Iterator[None]:
    """Redis down: every publish in the block fails as it does when the broker is gone."""
    with publishing_to(UNREACHABLE_BROKER_URL):
        yield


@dataclass(frozen=True)
class Queued:
    """One task message as the broker holds it."""

    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    eta: datetime | None
    retries: int
    argsrepr: str

    def countdown(self) -> float:
        """Seconds from now until the task is due (0 when it is due at once)."""
        return (self.eta - timezone.now()).total_seconds() if self.eta else 0.0


class Broker:
    """A Redis database that no worker consumes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.redis: Any = redis.Redis.from_url(url)

    @contextmanager
    def publishing(self) -> Iterator[Broker]:
        """Tasks published in the block go to this broker instead of running."""
        with publishing_to(self.url):
            yield self

    def queued(self, task: str | None = None) -> list[Queued]:
        """What is waiting, oldest first (of ``task`` only, when given)."""
        messages = []
        for key in sorted(self.redis.keys("*")):
            queue = key.decode()
            if queue.startswith("_kombu") or self.redis.type(key) != b"list":
                continue
            for raw in reversed(self.redis.lrange(key, 0, -1)):  # LPUSHed: newest first
                messages.append(_queued(json.loads(raw), queue))
        return [m for m in messages if task is None or m.task == task]

    def run(self, task: str | None = None) -> int:
        """Take what is waiting (of ``task`` only, when given), oldest first, and run each
        in this process, as a worker would; returns how many ran. Tasks they queue wait."""
        ran = 0
        for message in self.queued(task):
            self.redis.lrem(message.queue, 1, _raw_of(self.redis, message))
            app.tasks[message.task].apply(tuple(message.args), message.kwargs,
                                           retries=message.retries)
            ran += 1
        return ran

    def empty(self) -> None:
        self.redis.flushdb()


def _queued(message: dict[str, Any], queue: str) -> Queued:
    headers = message["headers"]
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    eta = datetime.fromisoformat(headers["eta"]) if headers.get("eta") else None
    return Queued(task=headers["task"], args=args, kwargs=kwargs, queue=queue, eta=eta,
                  retries=int(headers.get("retries") or 0),
                  argsrepr=str(headers.get("argsrepr") or ""))


def _raw_of(client: Any, message: Queued) -> bytes:
    for raw in client.lrange(message.queue, 0, -1):
        if _queued(json.loads(raw), message.queue) == message:
            return bytes(raw)
    raise LookupError(f"{message.task} is no longer queued")


def broker_url(db: int) -> str:
    """Database ``db`` of REDIS_URL's server."""
    parts = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    return urlunsplit(parts._replace(path=f"/{db}", query="", fragment=""))
