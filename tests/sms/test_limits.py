"""Send caps without Redis (the trial's local cache): the same caps, and the same "try
again after" as on Redis. tests/integration/test_send_caps_redis.py covers Redis."""

from __future__ import annotations

import pytest

from sms import limits
from sms.limits import PER_PHONE, PER_USER, SendLimited, sms_send_allow


def test_a_full_cap_says_how_much_of_its_window_is_left(monkeypatch: pytest.MonkeyPatch) -> None:
    window, limit = PER_USER[0]
    start = limits._now()
    for _ in range(limit):
        sms_send_allow(user_id=7)

    monkeypatch.setattr(limits, "_now", lambda: start + 240)
    with pytest.raises(SendLimited) as refused:
        sms_send_allow(user_id=7)

    assert window - 240 - 1 <= refused.value.retry_after <= window - 240 + 1
    sms_send_allow(user_id=8)  # another user's counter is their own


def test_a_refused_send_is_not_counted() -> None:
    _, limit = PER_USER[0]
    for _ in range(limit):
        sms_send_allow(user_id=7, phone="+14155550100")
    with pytest.raises(SendLimited):
        sms_send_allow(user_id=7, phone="+14155550101")
    # The refused send did not count against the second number.
    _, per_phone = PER_PHONE[0]
    for _ in range(per_phone):
        sms_send_allow(phone="+14155550101")
    with pytest.raises(SendLimited):
        sms_send_allow(phone="+14155550101")


def test_a_text_acted_on_again_counts_once() -> None:
    _, limit = PER_USER[0]
    for _ in range(2):
        sms_send_allow(user_id=7, event="SM-first")
    for n in range(limit - 1):
        sms_send_allow(user_id=7, event=f"SM-{n}")
    with pytest.raises(SendLimited):
        sms_send_allow(user_id=7, event="SM-new")
    with pytest.raises(SendLimited):
        sms_send_allow(user_id=7, event="SM-new")
    sms_send_allow(user_id=7, event="SM-first")
