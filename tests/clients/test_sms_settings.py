"""The company's SMS number and Twilio Messaging Service in General settings."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client as HttpClient
from pytest_django.fixtures import Settings

from blink.audit import SYSTEM
from blink.models import AuditEvent
from clients.models import Company
from clients.services import company_settings_update

URL = "/settings/"
MG = "MG" + "0123456789abcdef" * 2

BASE = {
    "name": "Acme IT",
    "support_email": "help@acme-it.example",
    "site_url": "https://blink.acme-it.example",
    "default_country": "US",
}


def _post(browser: HttpClient, **fields: Any) -> Any:
    return browser.post(URL, {**BASE, **fields})


def _fresh(company: Company) -> Company:
    return Company.objects.get(pk=company.pk)


def _errors(response: Any) -> str:
    return html.unescape(response.content.decode())


def test_the_number_is_read_in_the_default_country_and_saved_as_e164(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    response = _post(login(owner), sms_number="(415) 555-0100", messaging_service_sid=MG)

    assert response.status_code == 302
    fresh = _fresh(company)
    assert str(fresh.sms_number) == "+14155550100"
    assert fresh.messaging_service_sid == MG


def test_another_default_country_reads_the_number_as_its_own(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    _post(login(owner), default_country="GB", sms_number="07911 123456")

    assert str(_fresh(company).sms_number) == "+447911123456"


def test_a_number_with_its_country_code_ignores_the_default(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    _post(login(owner), default_country="GB", sms_number="+1 415 555 0100")

    assert str(_fresh(company).sms_number) == "+14155550100"


def test_the_page_shows_the_saved_values_and_the_webhook_address(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    company.sms_number = "+14155550100"
    company.messaging_service_sid = MG
    company.save()

    page = login(owner).get(URL).content.decode()

    assert 'value="+14155550100"' in page
    assert f'value="{MG}"' in page
    assert "https://blink.acme-it.example/sms/twilio/inbound" in page


def test_changes_are_audited(
    login: Callable[..., HttpClient], admin: User, company: Company
) -> None:
    _post(login(admin), sms_number="+14155550100")

    event = AuditEvent.objects.get(action="company.update")
    assert event.detail["changed"]["sms_number"] == ["", "+14155550100"]
    assert "messaging_service_sid" not in event.detail["changed"]
    assert event.actor_label == "adam"


def test_emptying_the_fields_returns_to_the_shared_number(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    company.sms_number = "+14155550100"
    company.messaging_service_sid = MG
    company.save()

    _post(login(owner), sms_number="", messaging_service_sid="")

    fresh = _fresh(company)
    assert (str(fresh.sms_number or ""), fresh.messaging_service_sid) == ("", "")


@pytest.mark.parametrize(("fields", "says"), [
    ({"sms_number": "12"}, "Enter a phone number Blink can text from"),
    ({"sms_number": "+1 555 0100 0100 0100 01"}, "Enter a phone number"),
    ({"sms_number": "٤١٥٥٥٥٠١٠٠"}, "Enter a phone number"),
    ({"sms_number": "not a number"}, "Enter a phone number"),
    ({"sms_number": "+15005550006"}, "Blink's shared number"),
    ({"messaging_service_sid": "MG123"}, "MG followed by 32 hex digits"),
    ({"messaging_service_sid": "PN" + "0" * 32}, "MG followed by 32 hex digits"),
    ({"messaging_service_sid": MG + "0"}, "at most 34 characters"),
    ({"sms_number": ["+14155550100", "+14155550101"]}, "Enter a single value"),
    ({"sms_number": "+1415555\x000100"}, "Null characters are not allowed"),
])
def test_bad_values_are_refused_with_a_sentence(
    login: Callable[..., HttpClient], owner: User, company: Company,
    fields: dict[str, Any], says: str,
) -> None:
    response = _post(login(owner), **fields)

    assert response.status_code == 200
    assert says in _errors(response)
    fresh = _fresh(company)
    assert (str(fresh.sms_number or ""), fresh.messaging_service_sid) == ("", "")


def test_two_companies_cannot_share_a_number(
    login: Callable[..., HttpClient], owner: User, company: Company, other_company: Company
) -> None:
    other_company.sms_number = "+14155550100"
    other_company.save()

    response = _post(login(owner), sms_number="415 555 0100")

    assert "Another company in this Blink already uses this number" in _errors(response)
    assert str(_fresh(company).sms_number or "") == ""


def test_saving_again_keeps_the_companys_own_number(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    browser = login(owner)
    _post(browser, sms_number="+14155550100")

    assert _post(browser, sms_number="+14155550100").status_code == 302


def test_each_member_changes_the_number_only_as_their_role_allows(
    persona: tuple[str, HttpClient], company: Company, other_company: Company
) -> None:
    name, browser = persona

    response = _post(browser, sms_number="+14155550100")

    if name == "reader":
        assert response.status_code == 403
        assert str(_fresh(company).sms_number or "") == ""
    elif name == "outsider":
        # Their own company changes; Acme's does not.
        assert str(_fresh(other_company).sms_number) == "+14155550100"
        assert str(_fresh(company).sms_number or "") == ""
    else:
        assert response.status_code == 302
        assert str(_fresh(company).sms_number) == "+14155550100"


def test_other_callers_of_the_service_leave_the_sms_settings_alone(
    company: Company, settings: Settings
) -> None:
    company.sms_number = "+14155550100"
    company.messaging_service_sid = MG
    company.save()

    company_settings_update(company=company, actor=SYSTEM, name="Acme", support_email="",
                            site_url=company.site_url, default_country="US")

    fresh = _fresh(company)
    assert (str(fresh.sms_number), fresh.messaging_service_sid) == ("+14155550100", MG)
