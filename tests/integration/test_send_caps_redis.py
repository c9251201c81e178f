"""Send caps on a real Redis cache, as in production: one atomic check-and-count."""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from sms.limits import (
    PER_ADDRESS,
    PER_PHONE,
    PER_USER,
    SendLimited,
    sms_send_allow,
    window_count,
)
from tests.servers import unavailable

pytestmark = pytest.mark.integration

REDIS_DB = 12


@pytest.fixture
def redis_cache(settings):
    base = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    url = urlunsplit(urlsplit(base)._replace(path=f"/{REDIS_DB}"))
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).flushdb()
    except redis.RedisError as error:
        unavailable(f"These tests need Redis at {url}: {error}")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": url, "KEY_PREFIX": "caps-test"}}
    yield url
    redis.Redis.from_url(url).flushdb()


def test_the_sixth_send_in_ten_minutes_is_refused(redis_cache):
    window, limit = PER_USER[0]
    for _ in range(limit):
        sms_send_allow(user_id=7, phone="+14155550100")
    with pytest.raises(SendLimited) as refused:
        sms_send_allow(user_id=7, phone="+14155550100")
    assert window - 5 <= refused.value.retry_after <= window
    # Later in the window, what is left of it, not the whole window again.
    server: Any = redis.Redis.from_url(redis_cache)
    for key in server.keys("*sms-cap:user:7:600*"):
        server.expire(key, 120)
    with pytest.raises(SendLimited) as refused:
        sms_send_allow(user_id=7, phone="+14155550100")
    assert 115 <= refused.value.retry_after <= 120
    # A refused send is not counted, and another user is unaffected.
    sms_send_allow(user_id=8, phone="+14155550101")
    assert [int(server.get(k) or 0) for k in server.keys("*sms-cap:user:7:600*")] == [limit]


def test_a_phone_is_capped_whichever_user_it_texts_for(redis_cache):
    window, limit = PER_PHONE[0]
    for user_id in range(100, 100 + limit):
        sms_send_allow(user_id=user_id, phone="+14155550104")
    with pytest.raises(SendLimited) as refused:
        sms_send_allow(user_id=200, phone="+14155550104")
    assert window - 5 <= refused.value.retry_after <= window
    sms_send_allow(user_id=200, phone="+14155550105")  # that user, another phone: fine


def test_an_address_is_capped_across_users_and_phones(redis_cache):
    limit = PER_ADDRESS[0][1]
    for n in range(limit):
        sms_send_allow(user_id=300 + n, phone=f"+1415555{1000 + n}", ip="203.0.113.9")
    with pytest.raises(SendLimited):
        sms_send_allow(user_id=400, phone="+14155552000", ip="203.0.113.9")
    sms_send_allow(user_id=400, phone="+14155552000", ip="203.0.113.10")


def test_the_daily_cap_holds_once_the_ten_minute_windows_pass(redis_cache):
    server: Any = redis.Redis.from_url(redis_cache)
    (short, per_short), (day, per_day) = PER_USER
    sent = 0
    while sent < per_day:
        for _ in range(per_short):
            sms_send_allow(user_id=11, phone=f"+1415555{3000 + sent}")
            sent += 1
        for key in server.keys(f"*sms-cap:user:11:{short}*"):
            server.delete(key)  # the ten minutes are over
    with pytest.raises(SendLimited) as refused:
        sms_send_allow(user_id=11, phone="+14155554000")
    assert day - 60 <= refused.value.retry_after <= day


def test_simultaneous_sends_cannot_slip_under_the_cap(redis_cache):
    allowed: list[bool] = []
    barrier = threading.Barrier(12)

    def send() -> None:
        barrier.wait()
        try:
            sms_send_allow(user_id=9, phone="+14155550102")
            allowed.append(True)
        except SendLimited:
            allowed.append(False)

    threads = [threading.Thread(target=send) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == PER_USER[0][1]


def test_an_unreachable_redis_refuses_every_send(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}
    with pytest.raises(SendLimited):
        sms_send_allow(user_id=10, phone="+14155550103")


def test_window_count_counts_within_its_window(redis_cache):
    assert [window_count(key="replies:+14155550104", window=60) for _ in range(3)] == [1, 2, 3]
    server: Any = redis.Redis.from_url(redis_cache)
    [key] = server.keys("*replies*")
    assert 0 < server.ttl(key) <= 60


def test_a_text_acted_on_again_counts_once(redis_cache):
    """An inbound text whose first run was undone (see sms.inbound._wait_again) is acted on
    again: its send was counted the first time."""
    _, limit = PER_USER[0]
    server: Any = redis.Redis.from_url(redis_cache)
    sms_send_allow(user_id=7, phone="+14155550100", event="SM-first")
    sms_send_allow(user_id=7, phone="+14155550100", event="SM-first")
    assert [int(server.get(k)) for k in server.keys("*sms-cap:user:7:600*")] == [1]
    assert 86_390 <= server.ttl(server.keys("*sms-cap-event:SM-first*")[0]) <= 86_400

    for n in range(limit - 1):
        sms_send_allow(user_id=7, phone="+14155550100", event=f"SM-{n}")
    with pytest.raises(SendLimited):
        sms_send_allow(user_id=7, phone="+14155550100", event="SM-new")
    # Refused, so not counted: it is refused again, not let through as "already counted".
    with pytest.raises(SendLimited):
        sms_send_allow(user_id=7, phone="+14155550100", event="SM-new")
    # A text counted before the cap filled still goes through when acted on again.
    sms_send_allow(user_id=7, phone="+14155550100", event="SM-first")
    assert [int(server.get(k)) for k in server.keys("*sms-cap:user:7:600*")] == [limit]
