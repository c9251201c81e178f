"""The Celery application. Workers: ``celery -A blink worker``; beat: ``celery -A blink beat``."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "blink.settings")

app = Celery("blink")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
