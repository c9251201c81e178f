"""The outbox's Windows sign-in box, which lets the trial lock demo accounts."""

from __future__ import annotations

import pytest

from blink.audit import SYSTEM
from directory.demo import POLICY, DemoDirectory, demo_directory_seed
from directory.models import DemoObject
from directory.services import connection_save


@pytest.fixture
def demo_user(acme_client):
    connection = connection_save(client=acme_client, actor=SYSTEM, kind="demo", parameters={},
                                 secrets={})
    demo_directory_seed(connection)
    user = DemoObject.objects.filter(connection=connection, kind="user", enabled=True).first()
    assert user is not None
    DemoDirectory(connection.pk).reset_password(user.object_id, "Temp-Pass-4477", must_change=True)
    return user


@pytest.fixture
def browser(settings, login, owner):
    settings.BLINK_DEMO = True
    return login(owner)


def sign_in(browser, username, password) -> str:
    response = browser.post("/dev/outbox/sign-in", {"username": username, "password": password},
                            follow=True)
    return response.content.decode()


def test_a_temporary_password_must_be_changed(browser, demo_user):
    assert "asks for a new password" in sign_in(browser, demo_user.username, "Temp-Pass-4477")


def test_wrong_passwords_lock_the_demo_account(browser, demo_user):
    for _ in range(POLICY.lockout_threshold - 1):
        assert "Wrong password" in sign_in(browser, demo_user.username, "nope")
    assert "The account is locked" in sign_in(browser, demo_user.username, "nope")
    assert "The account is locked" in sign_in(browser, demo_user.username, "Temp-Pass-4477")
    demo = DemoDirectory(demo_user.connection_id)
    assert list(demo.locked_out([demo_user.object_id])) == [demo_user.object_id]


def test_another_companys_demo_users_are_unknown(settings, login, outsider, demo_user):
    settings.BLINK_DEMO = True
    page = sign_in(login(outsider), demo_user.username, "Temp-Pass-4477")
    assert "No demo directory user has that user name" in page


def test_read_only_members_cannot_use_it(settings, login, reader, demo_user):
    settings.BLINK_DEMO = True
    response = login(reader).post("/dev/outbox/sign-in",
                                  {"username": demo_user.username, "password": "x"})
    assert response.status_code == 403


def test_it_is_off_outside_the_demo(settings, login, owner, demo_user):
    settings.BLINK_DEMO = False
    settings.DEBUG = False
    response = login(owner).post("/dev/outbox/sign-in",
                                 {"username": demo_user.username, "password": "x"})
    assert response.status_code == 404
