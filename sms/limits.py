"""Caps on SMS sends per user, per phone and per address, checked before any provider call.

Counters live in the cache (Redis in production). If the cache cannot be reached
the answer is no: a send cap that fails open is no cap.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.redis import RedisCache

log = logging.getLogger(__name__)

# (window in seconds, most sends in it)
PER_USER = ((600, 5), (86_400, 20))
PER_PHONE = ((600, 5), (86_400, 20))
PER_ADDRESS = ((600, 10), (86_400, 50))


def _now() -> float:
    return time.time()


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


# Checks every counter and, only when none is full, counts the send in all of them: one
# round trip instead of three per counter, and no other send can slip in between.
# KEYS are the counters, then the event's key when there is one; ARGV their windows, their
# limits, then 1 with an event (0 without). An event already counted is let through without
# counting it again. Returns the seconds left in the first full counter's window (when the
# user may send again), or 0 when the send was allowed.
_ALLOW_SCRIPT = """
local event = tonumber(ARGV[#ARGV])
local n = #KEYS - event
if event == 1 and redis.call('EXISTS', KEYS[n + 1]) == 1 then
  return 0
end
local longest = 1
for i = 1, n do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[n + i]) then
    local left = redis.call('TTL', KEYS[i])
    if left < 1 then left = tonumber(ARGV[i]) end
    return left
  end
  longest = math.max(longest, tonumber(ARGV[i]))
end
for i = 1, n do
  redis.call('SET', KEYS[i], 0, 'EX', ARGV[i], 'NX')
  redis.call('INCR', KEYS[i])
end
if event == 1 then
  redis.call('SET', KEYS[n + 1], 1, 'EX', longest)
end
return 0
"""


def _redis() -> Any | None:
    """The cache's Redis client when the cache is Redis (production), else None."""
    backend = caches[DEFAULT_CACHE_ALIAS]
    if isinstance(backend, RedisCache):
        return backend._cache.get_client(None, write=True)
    return None


def window_count(*, key: str, window: int) -> int:
    """Count one more event under ``key`` in a window of ``window`` seconds that starts at
    the first event; returns the count so far. One round trip on Redis."""
    client = _redis()
    if client is not None:
        full_key = cache.make_and_validate_key(key)
        pipe = client.pipeline(transaction=False)
        pipe.set(full_key, 0, ex=window, nx=True)
        pipe.incr(full_key)
        return int(pipe.execute()[1])
    try:
        return int(cache.incr(key))
    except ValueError:
        return 1 if cache.add(key, 1, window) else int(cache.incr(key))


def sms_send_allow(*, user_id: int | None = None, phone: str | None = None,
                   ip: str | None = None, event: str = "") -> None:
    """Count one send against every cap that applies, or raise ``SendLimited``.

    ``event``: what asked for the send (an inbound text's provider id), when it may ask
    again: a text acted on a second time (its first run was undone) counts once.
    """
    counters = _counters(user_id=user_id, phone=phone, ip=ip)
    event_key = f"sms-cap-event:{event}" if event else ""
    try:
        client = _redis()
        if client is not None:
            keys = [cache.make_and_validate_key(c.key) for c in counters]
            if event_key:
                keys.append(cache.make_and_validate_key(event_key))
            full = client.eval(_ALLOW_SCRIPT, len(keys), *keys,
                               *[c.window for c in counters], *[c.limit for c in counters],
                               1 if event_key else 0)
            if int(full):
                raise SendLimited(int(full))
            return
        if event_key and cache.get(event_key):
            return
        # Without Redis (the trial, tests), each counter keeps beside it when its window
        # ends, for the "try again after" the user is told.
        for counter in counters:
            if (cache.get(counter.key) or 0) >= counter.limit:
                ends = cache.get(f"{counter.key}:ends")
                left = counter.window if ends is None else math.ceil(ends - _now())
                raise SendLimited(min(max(left, 1), counter.window))
        for counter in counters:
            if cache.add(counter.key, 0, counter.window):
                cache.set(f"{counter.key}:ends", _now() + counter.window, counter.window)
            cache.incr(counter.key)
        if event_key:
            cache.set(event_key, 1, max((c.window for c in counters), default=1))
    except SendLimited:
        raise
    except Exception:
        log.exception("send caps could not be checked; refusing the send")
        raise SendLimited(60) from None
