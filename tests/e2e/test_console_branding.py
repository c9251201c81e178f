"""The owner brands Blink in a real browser: support email, colour, words and logo."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import AbstractBaseUser
from PIL import Image
from playwright.sync_api import FilePayload, Page, expect
from pytest_django.live_server_helper import LiveServer

from clients.models import Branding, Company
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SUPPORT_EMAIL = "help@acme-it.example"
PRIMARY_COLOUR = "#7c2d12"
PRIMARY_COLOUR_CSS = "rgb(124, 45, 18)"
PREVIEW_PATH = "/settings/branding/preview"


def _logo_png() -> FilePayload:
    out = io.BytesIO()
    Image.new("RGB", (64, 32), PRIMARY_COLOUR).save(out, format="PNG")
    return {"name": "acme.png", "mimeType": "image/png", "buffer": out.getvalue()}


def test_owner_brands_activation_email_and_preview_follows_typing(
    page: Page, live_server: LiveServer, company: Company, owner: AbstractBaseUser
) -> None:
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(owner.get_username())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Clients")).to_be_visible()

    sidebar = page.get_by_role("navigation", name="Console")
    sidebar.get_by_role("link", name="General").click()
    page.get_by_label("Support email").fill(SUPPORT_EMAIL)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Company settings saved.")

    sidebar.get_by_role("link", name="Branding").click()
    page.get_by_label("Primary colour").fill(PRIMARY_COLOUR)
    email_text = page.get_by_label("Activation email text")
    email_text.fill("Hi {first_name}, Acme IT now resets passwords by text message.")
    page.get_by_label("Logo:", exact=True).set_input_files(_logo_png())
    page.get_by_role("button", name="Save branding").click()

    expect(page.get_by_role("status").filter(has_text="Branding saved.")).to_be_visible()
    # The new page's images and deferred script (the live preview) are in once it has loaded.
    page.wait_for_load_state("load")
    expect(page.get_by_label("Primary colour")).to_have_value(PRIMARY_COLOUR)
    current_logo = page.get_by_role("img", name="Current logo")
    expect(current_logo).to_be_visible()
    # The image was served and decoded: the uploaded picture, 64 px wide, not a broken icon.
    assert current_logo.evaluate("img => img.complete && img.naturalWidth") == 64

    preview = page.frame_locator("#email-preview")
    expect(preview.locator("body")).to_contain_text(SUPPORT_EMAIL)
    expect(preview.locator("body")).to_contain_text(
        "Hi Alex, Acme IT now resets passwords by text message."
    )
    expect(preview.get_by_role("img", name=company.name)).to_be_visible()
    expect(preview.get_by_role("link", name="Activate Blink")).to_have_css(
        "background-color", PRIMARY_COLOUR_CSS
    )

    # More typing, no save: the preview follows once the typing pauses.
    email_text.press("Control+End")
    with page.expect_response(
        lambda response: response.url.endswith(PREVIEW_PATH), timeout=10_000
    ) as sent:
        email_text.press_sequentially(" Stuck? Write to {support_email}.")
    assert sent.value.ok
    expect(preview.locator("body")).to_contain_text(
        f"Hi Alex, Acme IT now resets passwords by text message. Stuck? Write to {SUPPORT_EMAIL}."
    )
    assert "Stuck?" not in Branding.objects.get(company=company).email_text
