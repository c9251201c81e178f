from __future__ import annotations

from unittest import mock

from django.db.utils import OperationalError


def test_trial_reports_database_and_in_process_tasks(client, db, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "none (tasks run in-process)",
                   "workers": "in-process"},
    }
    assert "no-cache" in response["Cache-Control"]


def test_database_down_answers_503(client, db, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    with mock.patch("django.db.backends.utils.CursorWrapper.execute",
                    side_effect=OperationalError("connection refused")):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unavailable"
