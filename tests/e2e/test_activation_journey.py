"""The whole journey in Chromium: an admin gives Blink to a user of a real Active Directory
(the Samba fixture); the activation email reaches a real SMTP server; the user follows the
link, confirms a phone with the code the Twilio stand-in delivered, and is set."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import AbstractBaseUser
from playwright.sync_api import Browser, Page, expect
from pytest_django.live_server_helper import LiveServer

from blink.models import BlinkUser
from clients.models import Client, Company
from directory.models import Connection
from directory.services import directory_sync
from tests.conftest import PASSWORD
from tests.fixtures.samba import samba_ad_connection

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PHONE = "+14155550142"


@pytest.fixture
def samba_client(samba_dc, acme_client: Client) -> Connection:
    connection = samba_ad_connection(samba_dc, acme_client)
    assert directory_sync(connection_id=connection.pk, claimed=True) is not None
    return connection


def test_admin_gives_blink_to_a_directory_user_who_activates(
    page: Page, browser: Browser, live_server: LiveServer, company: Company,
    owner: AbstractBaseUser, samba_dc, samba_client: Connection, smtp_server, twilio_backend,
) -> None:
    # Links in the email point at this server, as the company's public address.
    company.site_url = live_server.url
    company.support_email = "help@acme-it.example"
    company.save()
    person = samba_dc.users["sales"]

    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(owner.get_username())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("navigation", name="Console").get_by_role(
        "link", name="Blink User Setup").click()
    expect(page.get_by_role("heading", name="Blink User Setup")).to_be_visible()

    page.get_by_role("link", name="Domain Groups").click()
    expect(page.get_by_text("G-Sales", exact=True).first).to_be_visible()
    page.get_by_role("link", name="Organizational Unit").click()
    expect(page.get_by_text("Acme", exact=True).first).to_be_visible()

    page.get_by_role("button", name="Expand All", exact=True).click()
    row = page.locator("li.user", has_text=person.username)
    expect(row.first).to_be_visible()
    page.get_by_role("button", name="Check All", exact=True).click()
    assert page.locator("input.tick:checked").count() > 0
    page.get_by_role("button", name="Un-check All").click()
    assert page.locator("input[type=checkbox]:checked").count() == 0
    # The nested Domain Admin is shown but cannot be ticked.
    admin_row = page.locator("li.user", has_text=samba_dc.users["nested_admin"].username).first
    expect(admin_row.locator("input[type=checkbox]")).to_be_disabled()

    row.first.locator("input[type=checkbox]").check()
    page.get_by_role("button", name="Blink Users", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="1 user invited")).to_be_visible()

    [email] = smtp_server.mailbox.messages
    assert email["To"] == person.email
    text = email.get_body(("plain",)).get_content()
    link = re.search(r"(https?://\S+/activate/[\w-]+/)", text)
    assert link is not None

    # The user, on their own device.
    phone = browser.new_context().new_page()
    phone.goto(link.group(1))
    expect(phone.get_by_role("heading", name="Enter your mobile number")).to_be_visible()
    assert "/activate/phone/" in phone.url
    phone.get_by_label("Mobile number").fill(PHONE)
    phone.get_by_role("button", name="Text me a code").click()
    expect(phone.get_by_role("heading", name="Enter the code we texted you")).to_be_visible()
    phone.get_by_label("6-digit code").fill(twilio_backend.code_for(PHONE))
    phone.get_by_role("button", name="Confirm").click()

    expect(phone.get_by_role("heading", name="You're set.")).to_be_visible()
    card_link = phone.get_by_role("link", name="Add Blink to my contacts")
    href = card_link.get_attribute("href")
    assert href is not None
    card = phone.request.get(live_server.url + href)
    assert "BEGIN:VCARD" in card.text() and "TEL;TYPE=CELL:" in card.text()
    assert "help@acme-it.example" in phone.content()
    assert any("You're set up with Blink" in m.body for m in twilio_backend.messages_to(PHONE))

    blink_user = BlinkUser.objects.get(username=person.username)
    assert blink_user.status == BlinkUser.Status.ACTIVE and str(blink_user.phone) == PHONE
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Blink Users").click()
    expect(page.locator("tr", has_text=person.username).get_by_text("Active")).to_be_visible()
