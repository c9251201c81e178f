"""Reset Password and Unlock in Chromium, against the Samba DC with a real Celery worker on
Redis texting through the Twilio stand-in: the admin confirms, then watches the request
reach "Sent" without reloading; the user's texted password is one AD makes them change."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import AbstractBaseUser
from playwright.sync_api import Page, expect
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from directory.models import Connection
from tests.conftest import PASSWORD, password_in
from tests.fakes.twilio import FakeTwilio
from tests.fixtures.samba import SambaDC
from tests.integration.conftest import (
    CeleryWorker,
    active_blink_user,
    tasks_sent_to,
    twilio_worker_running,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PHONE = "+14155550199"
# A Redis database of this module's own (see tests/integration/conftest.py).
REDIS_DB = 11
# The worker, the directory and Twilio each take a moment; the page must get there alone.
SENT_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def module_worker(
    django_db_setup: None, twilio_service: FakeTwilio, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryWorker]:
    with twilio_worker_running(twilio_service, redis_db=REDIS_DB,
                               log_dir=tmp_path_factory.mktemp("reset-e2e-worker")) as worker:
        yield worker


@pytest.fixture
def worker(module_worker: CeleryWorker, transactional_db: None, settings: Settings,
           twilio_server: FakeTwilio) -> Iterator[CeleryWorker]:
    with tasks_sent_to(module_worker, settings):
        yield module_worker


def open_row_action(page: Page, live_server: LiveServer, username: str, action: str) -> None:
    page.goto(f"{live_server.url}/users/")
    row = page.locator("tr", has_text=username)
    row.get_by_role("group").or_(row.locator("summary")).first.click()
    row.get_by_role("link", name=action).click()


def watch_until_finished(page: Page, worker: CeleryWorker) -> None:
    """Wait on the status page, which must not reload, for the request to finish."""
    page.evaluate("window.blinkNoReload = true")
    label = page.locator('[data-field="label"]')
    try:
        expect(label).to_have_text("Sent", timeout=SENT_TIMEOUT_MS)
    except AssertionError:
        print(f"Worker log:\n{worker.log()}")
        raise
    assert page.evaluate("window.blinkNoReload") is True, "the status page reloaded"


def test_an_admin_unlocks_then_resets_a_password_in_chromium(
    page: Page, live_server: LiveServer, worker: CeleryWorker, owner: AbstractBaseUser,
    samba_dc: SambaDC, samba_connection: Connection, samba_user, twilio_server: FakeTwilio,
) -> None:
    person = samba_user()
    blink_user = active_blink_user(samba_connection, person, PHONE)
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(owner.get_username())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    # Failed binds lock the account; Unlock lets the old password in again.
    samba_dc.lock_out(person.upn)
    assert not samba_dc.try_bind(person.upn, person.password)[0]
    open_row_action(page, live_server, person.username, "Unlock…")
    expect(page.get_by_role("heading", name=f"Unlock {blink_user}'s account?")).to_be_visible()
    page.get_by_role("button", name="Unlock").click()
    expect(page.get_by_role("heading", name=f"Unlock for {blink_user}")).to_be_visible()
    watch_until_finished(page, worker)
    assert samba_dc.try_bind(person.upn, person.password)[0]

    # Reset Password: the admin sees it move to Sent; only the phone gets the password.
    open_row_action(page, live_server, person.username, "Reset Password…")
    expect(page.get_by_role("heading", name=f"Reset {blink_user}'s password?")).to_be_visible()
    expect(page.get_by_text("You will not see the password.")).to_be_visible()
    # Twilio's first answer is a 500: the worker tries again ~10 s later with the same text,
    # and the page, which never reloads, shows the request waiting on it, then sent.
    twilio_server.fail_next(1, status=500)
    page.get_by_role("button", name="Reset Password").click()
    expect(page.get_by_role("heading", name=f"Reset password for {blink_user}")).to_be_visible()
    page.evaluate("window.blinkNoReload = true")
    expect(page.locator('[data-field="label"]')).to_have_text("Texting",
                                                              timeout=SENT_TIMEOUT_MS)
    expect(page.locator('[data-field="detail"]')).to_contain_text(
        "Blink tries again with the same text")
    watch_until_finished(page, worker)
    expect(page.locator('[data-field="detail"]')).to_contain_text(
        "The password was reset and texted to •••• 0199.")
    expect(page.get_by_role("link", name="Try again")).to_be_hidden()

    texts = twilio_server.messages_to(PHONE)
    assert "is unlocked" in texts[0].body
    assert len(texts) == 2  # one password text despite the 500
    password = password_in(texts[-1].body)
    ok, message = samba_dc.try_bind(person.upn, password)
    assert not ok and "data 773" in message, message
    assert password not in page.content()
