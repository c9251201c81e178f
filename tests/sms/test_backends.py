"""Backends chosen by SMS_BACKEND, imported and built only when the first message goes out."""

from __future__ import annotations

import pytest
from pytest_django.fixtures import Settings

from sms.backends import SmsBackend, locmem, outbox, sms_backend
from sms.backends import twilio as twilio_backend
from sms.models import OutboxSms


@pytest.mark.parametrize("path", [
    "sms.backends.locmem.SmsBackend", "sms.backends.outbox.SmsBackend",
    "sms.backends.twilio.SmsBackend",
])
def test_every_backend_meets_the_protocol(settings: Settings, path: str) -> None:
    settings.SMS_BACKEND = path
    assert isinstance(sms_backend(), SmsBackend)


def test_the_backend_follows_the_setting(settings: Settings) -> None:
    settings.SMS_BACKEND = "sms.backends.locmem.SmsBackend"
    first = sms_backend()
    assert sms_backend() is first
    settings.SMS_BACKEND = "sms.backends.outbox.SmsBackend"
    assert isinstance(sms_backend(), outbox.SmsBackend)


def test_an_unknown_backend_is_an_import_error(settings: Settings) -> None:
    settings.SMS_BACKEND = "sms.backends.carrier_pigeon.SmsBackend"
    with pytest.raises(ImportError):
        sms_backend()


def test_the_twilio_client_is_built_on_the_first_send_only() -> None:
    backend = twilio_backend.SmsBackend()
    assert backend._client is None


def test_locmem_keeps_what_it_sent() -> None:
    locmem.outbox.clear()
    sid = locmem.SmsBackend().send(to="+14155550123", body="Hi", sender="+15005550006")
    assert locmem.outbox == [{
        "to": "+14155550123", "body": "Hi", "sender": "+15005550006",
        "messaging_service_sid": "", "status_callback": "", "provider_id": sid,
    }]
    assert len(sid) == 34
    locmem.outbox.clear()


def test_the_outbox_keeps_the_text_for_the_outbox_page(db: None) -> None:
    sid = outbox.SmsBackend().send(to="+14155550123", body="Code 424242", sender="",
                                   messaging_service_sid="MG" + "a" * 32)
    stored = OutboxSms.objects.get()
    assert sid.startswith("SMOUTBOX") and stored.provider_id == sid
    assert (stored.to, stored.body, stored.sender) == ("+14155550123", "Code 424242",
                                                       "MG…aaaaaaaa")
