"""The emails after a reset, through Django's SMTP backend to a real SMTP server."""

from __future__ import annotations

import pytest

from blink.audit import Actor
from blink.models import BlinkUser
from blink.resets import reset_request_create
from clients.models import Branding
from tests.conftest import demo_blink_user, password_in

pytestmark = pytest.mark.integration


@pytest.fixture
def user(company, acme_client, demo_connection) -> BlinkUser:
    """An Active Blink user with an email address, of a company that wants the notices."""
    company.support_email = "help@acme-it.example"
    company.notify_support_on_reset = True
    company.save()
    blink_user = demo_blink_user(acme_client, demo_connection, "+14155550188")
    BlinkUser.objects.filter(pk=blink_user.pk).update(email="ava@globex.example")
    blink_user.refresh_from_db()
    return blink_user


def test_the_user_and_support_get_their_emails_and_neither_carries_the_password(
    smtp_server, company, user, sms_outbox, django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        reset_request_create(blink_user=user, actor=Actor(label="olivia", ip="192.0.2.7"),
                             channel="console")

    password = password_in(sms_outbox[-1]["body"])
    to_user, to_support = smtp_server.mailbox.messages
    assert (to_user["To"], to_user["Reply-To"], to_user["Subject"]) == (
        "ava@globex.example", "help@acme-it.example", "Acme IT Blink: your password was reset")
    assert to_support["To"] == "help@acme-it.example"
    user_text = to_user.get_body(("plain",)).get_content()
    support_text = to_support.get_body(("plain",)).get_content()
    assert f"The password of your account {user.username} was reset" in user_text
    branded = to_user.get_body(("html",)).get_content()
    assert f"<strong>{user.username}</strong> was reset" in branded
    assert Branding.objects.get(company=company).primary_colour in branded
    assert "asked by olivia (Console)" in support_text
    for text in (user_text, support_text, str(to_user), str(to_support)):
        assert password not in text


def test_a_refused_address_does_not_keep_the_notice_to_support_from_going(
    smtp_server, company, user, sms_outbox, django_capture_on_commit_callbacks,
):
    smtp_server.mailbox.unknown.add("ava@globex.example")

    with django_capture_on_commit_callbacks(execute=True):
        reset_request_create(blink_user=user, actor=Actor(label="olivia"), channel="console")

    assert [m["To"] for m in smtp_server.mailbox.messages] == ["help@acme-it.example"]
