"""Ask for a PIN in Chromium: the client's SMS reset starts needing a PIN; the admin emails
the Active users who have none a link from the client's page; the email reaches a real SMTP
server; the user follows the link, confirms their phone with the code the Twilio stand-in
delivered and chooses a PIN, and Blink Users stops marking them."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.hashers import check_password
from django.contrib.auth.models import AbstractBaseUser
from playwright.sync_api import Browser, Page, expect
from pytest_django.live_server_helper import LiveServer

from blink.models import BlinkUser
from clients.models import Client, Company
from directory.models import Connection
from tests.conftest import PASSWORD, demo_blink_user

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PHONE = "+14155550143"
PIN = "4821"


def test_a_user_without_a_pin_chooses_one_from_the_emailed_link(
    page: Page, browser: Browser, live_server: LiveServer, company: Company,
    owner: AbstractBaseUser, acme_client: Client, demo_connection: Connection, smtp_server,
    twilio_backend,
) -> None:
    company.site_url = live_server.url
    company.save()
    Client.objects.filter(pk=acme_client.pk).update(sms_reset_needs_pin=True)
    user = demo_blink_user(acme_client, demo_connection, PHONE)
    BlinkUser.objects.filter(pk=user.pk).update(email="ava@globex.example")

    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(owner.get_username())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{live_server.url}/users/")
    expect(page.locator("tr", has_text=user.username).get_by_text("No PIN")).to_be_visible()
    page.goto(f"{live_server.url}/clients/{acme_client.pk}/")
    expect(page.get_by_text("1 Active user of Globex has no PIN")).to_be_visible()
    page.get_by_role("button", name="Email them a link to choose a PIN").click()
    expect(page.get_by_role("status").filter(
        has_text="A link to choose a PIN is on its way to 1 user.")).to_be_visible()

    [email] = smtp_server.mailbox.messages
    assert email["To"] == "ava@globex.example"
    link = re.search(r"(https?://\S+/activate/[\w-]+/)", email.get_body(("plain",)).get_content())
    assert link is not None

    phone = browser.new_context().new_page()
    phone.goto(link.group(1))
    expect(phone.get_by_role("heading", name="Choose a PIN for Blink")).to_be_visible()
    assert twilio_backend.messages_to(PHONE) == []  # opening the link texts nothing
    phone.get_by_role("button", name="Text me a code").click()
    phone.get_by_label("6-digit code").fill(twilio_backend.code_for(PHONE))
    phone.get_by_role("button", name="Confirm").click()
    phone.get_by_label("PIN (4 to 6 digits)").fill(PIN)
    phone.get_by_label("The same PIN again").fill(PIN)
    phone.get_by_role("button", name="Finish").click()

    expect(phone.get_by_role("heading", name="You're set.")).to_be_visible()
    assert "RESET 1234" in phone.content()
    assert twilio_backend.messages_to(PHONE)[-1].body.startswith(
        "Your Blink PIN for Acme IT is set.")
    user.refresh_from_db()
    assert user.is_active() and str(user.phone) == PHONE and check_password(PIN, user.pin_hash)
    page.goto(f"{live_server.url}/users/")
    expect(page.locator("tr", has_text=user.username)).to_be_visible()
    expect(page.locator("tr", has_text=user.username).get_by_text("No PIN")).to_have_count(0)
