"""A real Celery worker on Redis runs Blink's tasks, and /healthz tells the truth about it."""

from __future__ import annotations

import time

import pytest
from django.test import Client as HttpClient
from pytest_django.fixtures import Settings

from blink.models import WorkerHeartbeat
from blink.tasks import worker_heartbeat
from tests.broker import unreachable_broker
from tests.integration.conftest import CeleryWorker

HEARTBEAT_WAIT_SECONDS = 20

pytestmark = pytest.mark.integration


def _heartbeat_wait(worker: CeleryWorker) -> WorkerHeartbeat:
    deadline = time.monotonic() + HEARTBEAT_WAIT_SECONDS
    while time.monotonic() < deadline:
        heartbeat = WorkerHeartbeat.objects.first()
        if heartbeat is not None:
            return heartbeat
        if worker.process.poll() is not None:
            pytest.fail(f"The Celery worker exited with code {worker.process.returncode}.")
        time.sleep(0.2)
    pytest.fail(f"The worker recorded no heartbeat within {HEARTBEAT_WAIT_SECONDS} s.")


def test_worker_runs_heartbeat_task_and_healthz_reports_it(celery_worker: CeleryWorker) -> None:
    assert not WorkerHeartbeat.objects.exists()

    worker_heartbeat.delay()

    _heartbeat_wait(celery_worker)
    response = HttpClient().get("/healthz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"] == "ok"
    assert body["checks"]["workers"].startswith("last seen"), body
    assert "stale" not in body["checks"]["workers"]


def test_healthz_answers_503_when_broker_is_unreachable(
    db: None, settings: Settings
) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = False

    with unreachable_broker():
        response = HttpClient().get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"] == "unavailable"
    assert body["checks"]["database"] == "ok"
