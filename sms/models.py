"""Messages Blink sends. For now: the development outbox for email."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class OutboxEmail(models.Model):
    """An email kept instead of sent, for the trial and for development."""

    to = models.TextField()
    subject = models.CharField(max_length=300)
    body_text = models.TextField()
    body_html = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.subject} → {self.to}"
