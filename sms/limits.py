"""Caps on SMS sends per user, per phone and per address, checked before any provider call.

Counters live in the cache (Redis in production). If the cache cannot be reached
the answer is no: a send cap that fails open is no cap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.core.cache import cache

log = logging.getLogger(__name__)

# (window in seconds, most sends in it)
PER_USER = ((600, 5), (86_400, 20))
PER_PHONE = ((600, 5), (86_400, 20))
PER_ADDRESS = ((600, 10), (86_400, 50))


class SendLimited(Exception):
    """Too many SMS for this user, number or address; ``retry_after`` is in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Counter:
    key: str
    window: int
    limit: int


def _counters(*, user_id: int | None, phone: str | None, ip: str | None) -> list[_Counter]:
    counters = []
    for name, value, caps in (("user", user_id, PER_USER), ("phone", phone, PER_PHONE),
                              ("ip", ip, PER_ADDRESS)):
        if value:
            counters += [_Counter(f"sms-cap:{name}:{value}:{window}", window, limit)
                         for window, limit in caps]
    return counters


def sms_send_allow(*, user_id: int | None = None, phone: str | None = None,
                   ip: str | None = None) -> None:
    """Count one send against every cap that applies, or raise ``SendLimited``."""
    counters = _counters(user_id=user_id, phone=phone, ip=ip)
    try:
        for counter in counters:
            if (cache.get(counter.key) or 0) >= counter.limit:
                raise SendLimited(counter.window)
        for counter in counters:
            cache.add(counter.key, 0, counter.window)
            cache.incr(counter.key)
    except SendLimited:
        raise
    except Exception:
        log.exception("send caps could not be checked; refusing the send")
        raise SendLimited(60) from None
