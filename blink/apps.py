from __future__ import annotations

from django.apps import AppConfig


class BlinkConfig(AppConfig):
    name = "blink"
    verbose_name = "Blink users, resets and the audit trail"
