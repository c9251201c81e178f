from __future__ import annotations

import pytest
from django.test import Client as HttpClient

from blink.models import AuditEvent
from tests.conftest import PASSWORD


@pytest.fixture
def browser() -> HttpClient:
    return HttpClient()


def test_console_pages_send_anonymous_visitors_to_sign_in(browser, db):
    for path in ["/", "/clients/", "/settings/", "/settings/branding/", "/audit/", "/setup/",
                 "/users/", "/account/password/"]:
        response = browser.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/login/?next="), path


def test_sign_in_lands_on_the_console_and_is_audited(browser, owner, company):
    response = browser.post("/login/", {"username": "olivia", "password": PASSWORD}, follow=True)
    assert response.status_code == 200
    assert b"Clients" in response.content
    assert b"Acme IT" in response.content
    event = AuditEvent.objects.get(company=company, action="console.sign_in")
    assert event.actor_label == "olivia"
    assert event.ip_address == "127.0.0.1"


def test_wrong_password_shows_a_message(browser, owner):
    response = browser.post("/login/", {"username": "olivia", "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_repeated_failures_pause_sign_in_even_with_the_right_password(browser, owner, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        browser.post("/login/", {"username": "olivia", "password": "wrong"})
    response = browser.post("/login/", {"username": "olivia", "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many sign-in attempts" in response.content
    assert "_auth_user_id" not in browser.session


def test_failures_for_one_account_do_not_lock_another(browser, owner, admin, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        browser.post("/login/", {"username": "olivia", "password": "wrong"})
    response = browser.post("/login/", {"username": "adam", "password": PASSWORD})
    assert response.status_code == 302


def test_sign_out_needs_post_and_is_audited(login, owner, company):
    browser = login(owner)
    assert browser.get("/logout/").status_code == 405
    response = browser.post("/logout/")
    assert response.status_code == 302
    assert browser.get("/clients/").status_code == 302
    assert AuditEvent.objects.filter(company=company, action="console.sign_out").count() == 1


def test_password_change(login, reader, company):
    browser = login(reader)
    new = "a brand new long passphrase"
    response = browser.post("/account/password/", {
        "old_password": PASSWORD, "new_password1": new, "new_password2": new,
    }, follow=True)
    assert b"Your password was changed" in response.content
    reader.refresh_from_db()
    assert reader.check_password(new)
    assert AuditEvent.objects.filter(company=company, action="console.password_change").count() == 1


def test_password_change_refuses_a_short_password(login, reader):
    browser = login(reader)
    response = browser.post("/account/password/", {
        "old_password": PASSWORD, "new_password1": "short", "new_password2": "short",
    })
    assert response.status_code == 200
    assert b"too short" in response.content
    reader.refresh_from_db()
    assert reader.check_password(PASSWORD)


def test_account_without_a_company_is_refused(db, login, django_user_model):
    stray = django_user_model.objects.create_user(username="stray", password=PASSWORD)
    response = login(stray).get("/clients/")
    assert response.status_code == 403
    assert b"not an admin of any company" in response.content
