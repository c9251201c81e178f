"""SMS delivery tasks (the provider call and its retries live here)."""

from __future__ import annotations

from celery import shared_task


@shared_task(ignore_result=True)
def message_send(message_id: int) -> None:
    """Hand one queued message to the provider (filled in with the SMS backends)."""
