from __future__ import annotations

from django.core.mail import EmailMultiAlternatives, get_connection

from sms.models import OutboxEmail


def test_outbox_keeps_email_instead_of_sending(db):
    message = EmailMultiAlternatives("Hello", "Plain body", "blink@example.com",
                                     ["ann@example.com", "bob@example.com"])
    message.attach_alternative("<p>HTML body</p>", "text/html")
    sent = get_connection("sms.outbox.EmailBackend").send_messages([message])
    assert sent == 1
    kept = OutboxEmail.objects.get()
    assert kept.to == "ann@example.com, bob@example.com"
    assert (kept.subject, kept.body_text, kept.body_html) == (
        "Hello", "Plain body", "<p>HTML body</p>"
    )
