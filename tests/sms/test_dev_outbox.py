"""The development outbox page: only with DEBUG or the demo, only for owners and admins;
it shows every caught email and SMS and texts Blink back through the inbound path."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client as HttpClient
from pytest_django.fixtures import Settings

from clients.models import Company
from sms.inbound import help_text
from sms.models import Message, OptOut, OutboxEmail, OutboxSms
from sms.outbox import EmailBackend
from tests.sms.conftest import USER_PHONE

URL = "/dev/outbox/"
REPLY_URL = "/dev/outbox/reply"


@pytest.fixture
def outbox_on(settings: Settings) -> Settings:
    settings.DEBUG = False
    settings.BLINK_DEMO = True
    settings.SMS_BACKEND = "sms.backends.outbox.SmsBackend"
    return settings


@pytest.fixture
def caught(db: None) -> None:
    """One email (HTML and text, with a link) and one SMS in the outbox."""
    from django.core.mail import EmailMultiAlternatives

    email = EmailMultiAlternatives(
        "Activate Blink", "Open https://blink.acme-it.example/activate/tok3n/ to start.",
        to=["alex@globex.example"],
    )
    email.attach_alternative(
        '<p><a href="https://blink.acme-it.example/activate/tok3n/">Activate</a></p>'
        "<script>alert(1)</script>", "text/html")
    EmailBackend().send_messages([email])
    OutboxSms.objects.create(to=USER_PHONE, sender="+15005550006",
                             body="Your Acme IT Blink code is 424242.",
                             provider_id="SMOUTBOX" + "1" * 26)


def test_the_page_does_not_exist_without_debug_or_the_demo(
    settings: Settings, login: Callable[..., HttpClient], owner: User
) -> None:
    settings.DEBUG = False
    settings.BLINK_DEMO = False
    browser = login(owner)

    assert browser.get(URL).status_code == 404
    assert browser.post(REPLY_URL, {"phone": USER_PHONE, "text": "HELP"}).status_code == 404
    assert not Message.objects.exists()
    assert 'href="/dev/outbox/"' not in browser.get("/settings/").content.decode()


def test_owners_and_admins_see_everything_readers_are_refused(
    outbox_on: Settings, caught: None, persona: tuple[str, HttpClient]
) -> None:
    name, browser = persona

    response = browser.get(URL)

    if name == "reader":
        assert response.status_code == 403
        return
    # The outsider owns another company; outbox rows belong to no company (a dev tool).
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]  # codes and passwords: never cached
    page = response.content.decode()
    assert "Activate Blink" in page
    assert "Your Acme IT Blink code is 424242." in page
    assert "not only" in page
    assert 'href="/dev/outbox/"' in page


def test_links_are_clickable_and_email_html_is_sandboxed(
    outbox_on: Settings, caught: None, login: Callable[..., HttpClient], owner: User
) -> None:
    page = login(owner).get(URL).content.decode()

    assert '<a href="https://blink.acme-it.example/activate/tok3n/"' in page
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in page
    assert "<script>alert(1)</script>" not in page
    assert "allow-scripts" not in page
    # The email's HTML is the iframe's document, escaped into its srcdoc attribute.
    srcdoc = page.split('srcdoc="', 1)[1].split('"></iframe>', 1)[0]
    assert "<" not in srcdoc and '"' not in srcdoc
    assert html.unescape(srcdoc).startswith('<base target="_blank"><p><a href=')


def test_anonymous_visitors_are_sent_to_sign_in(outbox_on: Settings, client: HttpClient,
                                                 db: None) -> None:
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_replying_as_a_phone_goes_through_the_inbound_path(
    outbox_on: Settings, company: Company, login: Callable[..., HttpClient], owner: User,
    send_now: Callable[..., Any],
) -> None:
    browser = login(owner)

    response = send_now(lambda: browser.post(REPLY_URL, {"phone": "(415) 555-0123",
                                                         "text": "help"}))

    assert response.status_code == 302
    assert response["Location"] == URL
    inbound = Message.objects.get(direction=Message.Direction.INBOUND)
    assert (inbound.company, str(inbound.phone), inbound.body) == (company, USER_PHONE, "help")
    assert (inbound.provider_id or "").startswith("SMDEV")
    reply = OutboxSms.objects.get(to=USER_PHONE)
    assert reply.body == help_text(company)
    page = browser.get(URL).content.decode()
    assert html.escape(help_text(company)) in page
    assert "Texted Blink as •••• 0123." in page


def test_stop_from_the_outbox_opts_the_phone_out(
    outbox_on: Settings, company: Company, login: Callable[..., HttpClient], admin: User,
    send_now: Callable[..., Any],
) -> None:
    send_now(lambda: login(admin).post(REPLY_URL, {"phone": USER_PHONE, "text": "STOP"}))

    assert OptOut.objects.filter(phone=USER_PHONE).exists()
    assert not OutboxSms.objects.exists()


@pytest.mark.parametrize("data", [
    {"phone": "not a phone", "text": "HELP"},
    {"phone": USER_PHONE, "text": "x" * 1601},
    {"phone": USER_PHONE, "text": "HE\x00LP"},
    {"text": "HELP"},
])
def test_a_bad_reply_is_refused_and_nothing_is_stored(
    outbox_on: Settings, company: Company, login: Callable[..., HttpClient], owner: User,
    data: dict[str, str],
) -> None:
    response = login(owner).post(REPLY_URL, data)

    assert response.status_code == 400
    assert not Message.objects.exists()


def test_readers_cannot_reply(
    outbox_on: Settings, login: Callable[..., HttpClient], reader: User
) -> None:
    assert login(reader).post(REPLY_URL, {"phone": USER_PHONE, "text": "HELP"}).status_code \
        == 403
    assert not Message.objects.exists()


def test_emails_are_newest_first(
    outbox_on: Settings, login: Callable[..., HttpClient], owner: User
) -> None:
    OutboxEmail.objects.create(to="a@example.com", subject="First one", body_text="1")
    OutboxEmail.objects.create(to="b@example.com", subject="Second one", body_text="2")

    page = login(owner).get(URL).content.decode()

    assert page.index("Second one") < page.index("First one")
