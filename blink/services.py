"""Writes on Blink's own records."""

from __future__ import annotations

from django.utils import timezone

from blink.models import WorkerHeartbeat


def worker_heartbeat_record(*, hostname: str) -> WorkerHeartbeat:
    """Note that the worker on ``hostname`` ran a task just now."""
    heartbeat, _ = WorkerHeartbeat.objects.update_or_create(
        hostname=hostname[:200], defaults={"seen_at": timezone.now()}
    )
    return heartbeat
