"""General settings: who may read and change them, what is saved, and what is refused."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client as HttpClient

from blink.models import AuditEvent
from clients.models import Company

URL = "/settings/"

VALID = {
    "name": "Acme IT Services",
    "support_email": "help@acme-it.example",
    "site_url": "https://reset.acme-it.example",
    "default_country": "GB",
}


def _saved(company: Company) -> tuple[str, str, str, str]:
    """The company's settings as stored, read fresh from the database."""
    fresh = Company.objects.get(pk=company.pk)
    return (fresh.name, fresh.support_email, fresh.site_url, fresh.default_country)


def _page_text(response: Any) -> str:
    return html.unescape(response.content.decode())


def test_every_member_reads_their_own_companys_settings(
    persona: tuple[str, HttpClient], company: Company, other_company: Company
) -> None:
    name, browser = persona
    response = browser.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    if name == "outsider":
        assert "Rival MSP" in page
        assert "blink.rival.example" in page
        assert "Acme IT" not in page
        assert "acme-it" not in page
    else:
        assert "Acme IT" in page
        assert "blink.acme-it.example" in page
        assert "Rival MSP" not in page


def test_read_only_member_sees_settings_without_a_save_button(
    login: Callable[..., HttpClient], reader: User, company: Company
) -> None:
    page = _page_text(login(reader).get(URL))
    assert "Your role is read-only" in page
    assert "<fieldset disabled>" in page
    assert ">Save</button>" not in page


def test_each_member_saves_only_what_their_role_allows(
    persona: tuple[str, HttpClient], company: Company, other_company: Company
) -> None:
    name, browser = persona
    acme_before = _saved(company)
    rival_before = _saved(other_company)

    response = browser.post(URL, VALID)

    if name == "reader":
        assert response.status_code == 403
        assert "Your role is read-only" in _page_text(response)
        assert _saved(company) == acme_before
    elif name == "outsider":
        assert response.status_code == 302
        assert _saved(other_company) == (
            "Acme IT Services", "help@acme-it.example", "https://reset.acme-it.example", "GB"
        )
        assert _saved(company) == acme_before
    else:
        assert response.status_code == 302
        assert _saved(company) == (
            "Acme IT Services", "help@acme-it.example", "https://reset.acme-it.example", "GB"
        )
        assert _saved(other_company) == rival_before


def test_anonymous_visitor_is_sent_to_sign_in(client: HttpClient, company: Company) -> None:
    before = _saved(company)
    for response in (client.get(URL), client.post(URL, VALID)):
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=/settings/")
    assert _saved(company) == before


def test_saved_settings_show_on_reload(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    browser = login(owner)
    response = browser.post(URL, VALID, follow=True)
    assert response.status_code == 200
    assert "Company settings saved." in _page_text(response)

    page = browser.get(URL).content.decode()
    assert 'value="Acme IT Services"' in page
    assert 'value="help@acme-it.example"' in page
    assert 'value="https://reset.acme-it.example"' in page
    assert '<option value="GB" selected>' in page


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("https://reset.acme-it.example/", "https://reset.acme-it.example"),
        ("https://acme-it.example/blink//", "https://acme-it.example/blink"),
        ("reset.acme-it.example", "https://reset.acme-it.example"),
    ],
)
def test_site_url_is_stored_without_trailing_slash(
    login: Callable[..., HttpClient], owner: User, company: Company, typed: str, stored: str
) -> None:
    response = login(owner).post(URL, {**VALID, "site_url": typed})
    assert response.status_code == 302
    assert Company.objects.get(pk=company.pk).site_url == stored
    assert Company.objects.get(pk=company.pk).link("/activate/x") == stored + "/activate/x"


def test_saving_records_who_changed_what_from_where(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    login(owner).post(URL, {**VALID, "support_email": "", "site_url": company.site_url + "/"})

    events = AuditEvent.objects.filter(company=company, action="company.update")
    assert events.count() == 1
    event = events.get()
    assert event.actor == owner
    assert event.actor_label == "olivia"
    assert event.ip_address == "127.0.0.1"
    assert event.target_label == "Acme IT Services"
    # Only the fields that changed are listed, with their old and new values.
    assert event.detail == {
        "changed": {
            "name": ["Acme IT", "Acme IT Services"],
            "default_country": ["US", "GB"],
        }
    }


def test_saving_unchanged_settings_records_nothing(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    unchanged = {
        "name": company.name,
        "support_email": company.support_email,
        "site_url": company.site_url,
        "default_country": company.default_country,
    }
    response = login(owner).post(URL, unchanged)
    assert response.status_code == 302
    assert not AuditEvent.objects.filter(company=company, action="company.update").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "This field is required."),
        ("name", "   ", "This field is required."),
        ("name", "x" * 10240, "Ensure this value has at most 120 characters (it has 10240)."),
        ("name", "Acme\x00IT", "Null characters are not allowed."),
        ("name", ["Acme A", "Acme B"], "Enter a single value for this field."),
        ("support_email", "not-an-email", "Enter a valid email address."),
        ("support_email", "help@acme-it.example\x00", "Null characters are not allowed."),
        ("support_email", ["a@acme-it.example", "b@acme-it.example"],
         "Enter a single value for this field."),
        ("site_url", "javascript:alert(1)", "Enter a valid URL."),
        ("site_url", "ftp://files.acme-it.example", "Enter an address that starts with https://."),
        ("site_url", "https://reset.acme-it.example/?next=evil",
         "Enter just the site's address, without ?, # or a login."),
        ("site_url", "https://admin:pw@reset.acme-it.example",
         "Enter just the site's address, without ?, # or a login."),
        ("site_url", "", "This field is required."),
        ("default_country", "XX", "Select a valid choice. XX is not one of the available choices."),
        ("default_country", "us", "Select a valid choice. us is not one of the available choices."),
    ],
    ids=[
        "empty-name", "blank-name", "10kB-name", "nul-in-name", "name-twice", "bad-email",
        "nul-in-email", "email-twice", "javascript-url", "ftp-url", "url-with-query",
        "url-with-login", "empty-url", "unknown-country", "lowercase-country",
    ],
)
def test_bad_input_is_refused_with_a_message_and_nothing_saved(
    login: Callable[..., HttpClient], owner: User, company: Company,
    field: str, value: str | list[str], message: str,
) -> None:
    before = _saved(company)

    response = login(owner).post(URL, {**VALID, field: value})

    assert response.status_code == 200
    page = _page_text(response)
    assert message in page
    assert 'class="field invalid"' in response.content.decode()
    assert "Company settings saved." not in page
    assert _saved(company) == before
    assert not AuditEvent.objects.filter(company=company, action="company.update").exists()


def test_the_support_address_can_be_emailed_after_every_reset(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    browser = login(owner)
    assert 'id="id_notify_support_on_reset" checked' not in browser.get(URL).content.decode()

    without_address = browser.post(URL, {**VALID, "support_email": "",
                                         "notify_support_on_reset": "on"})
    assert without_address.status_code == 200
    assert "Enter the support email to send these to." in _page_text(without_address)
    assert not Company.objects.get(pk=company.pk).notify_support_on_reset

    saved = browser.post(URL, {**VALID, "notify_support_on_reset": "on"}, follow=True)
    assert "Company settings saved." in _page_text(saved)
    assert Company.objects.get(pk=company.pk).notify_support_on_reset
    assert 'id="id_notify_support_on_reset" checked' in browser.get(URL).content.decode()
    event = AuditEvent.objects.filter(action="company.update").latest("id")
    assert "notify_support_on_reset" in str(event.detail["changed"])

    browser.post(URL, VALID)  # unticked
    assert not Company.objects.get(pk=company.pk).notify_support_on_reset
