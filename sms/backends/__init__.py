"""SMS backends, chosen by ``settings.SMS_BACKEND`` (a dotted path to a class, like
Django's ``EMAIL_BACKEND``) and imported only when the first message is sent."""

from __future__ import annotations

import os
import threading
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from sms.backends.base import SmsBackend, SmsError

__all__ = ["SmsBackend", "SmsError", "sms_backend"]

# Settings that change what a backend instance holds (the Twilio client and its
# connection pool). A test that changes one of them gets a fresh instance.
_KEYED_ON = ("SMS_BACKEND", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_BASE",
             "TWILIO_CA_BUNDLE", "TWILIO_TIMEOUT", "BLINK_HTTPS_PROXY")

_lock = threading.Lock()
_current: tuple[tuple[Any, ...], SmsBackend] | None = None


def sms_backend() -> SmsBackend:
    """The configured backend, built on first use in this process (never at import:
    Celery forks its workers, and a connection pool must not cross a fork)."""
    global _current
    key = tuple(getattr(settings, name, "") for name in _KEYED_ON)
    with _lock:
        if _current is None or _current[0] != key:
            backend_class = import_string(settings.SMS_BACKEND)
            _current = (key, backend_class())
        return _current[1]


def _forget() -> None:
    global _current
    _current = None


# A child process builds its own backend rather than sharing the parent's sockets.
os.register_at_fork(after_in_child=_forget)
