"""Ask for a PIN: an Active user who activated before their client's SMS reset needed a PIN
is emailed a link, confirms their phone with a code and chooses a PIN, and stays Active
throughout with the same phone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.hashers import check_password
from django.core import mail
from django.test import Client as Browser

from blink.models import AuditEvent, BlinkUser
from clients.models import Client
from directory.models import Connection
from sms.backends import locmem
from sms.models import VerificationCode
from tests.blink.test_activation import PHONE, latest_code, link_in, path_of
from tests.conftest import demo_blink_user

PIN = "4821"
ACTIVATED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def ava(pin_client: Client, demo_connection: Connection) -> BlinkUser:
    """Active since before the client asked for PINs, so without one."""
    ava = demo_blink_user(pin_client, demo_connection, PHONE)
    BlinkUser.objects.filter(pk=ava.pk).update(email="ava@globex.example",
                                               activated_at=ACTIVATED)
    ava.refresh_from_db()
    assert ava.pin_missing()
    return ava


def ask(browser: Browser, blink_user: BlinkUser,
        run: Callable[..., Any]) -> Any:
    with run(execute=True):
        return browser.post(f"/users/{blink_user.pk}/ask-pin", follow=True)


def test_the_user_chooses_a_pin_from_the_emailed_link_and_stays_active(
    login: Callable[..., Browser], owner: Any, ava: BlinkUser,
    sms_outbox: list[locmem.SentSms], django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    admin = login(owner)
    users = admin.get("/users/").content.decode()
    assert f'href="/users/{ava.pk}/ask-pin"' in users
    confirm = admin.get(f"/users/{ava.pk}/ask-pin").content.decode()
    assert "Ask" in confirm and "•••• 0123" in confirm and PHONE not in confirm

    page = ask(admin, ava, django_capture_on_commit_callbacks).content.decode()

    assert "A link to choose a PIN is on its way" in page
    [email] = mail.outbox
    assert email.to == ["ava@globex.example"]
    assert email.subject == "Choose a PIN for Blink at Acme IT"
    assert "•••• 0123" in email.body and "expires in 72 hours" in email.body
    assert AuditEvent.objects.filter(action="blink_user.pin_ask",
                                     target_label=ava.username).count() == 1

    # Opening the link (a mail scanner does too) sends nothing yet.
    user = Browser()
    opened = user.get(path_of(link_in(email)))
    assert opened.status_code == 302 and opened["Location"] == "/activate/phone/"
    first = user.get("/activate/phone/").content.decode()
    assert "Choose a PIN for Blink" in first and "•••• 0123" in first
    assert sms_outbox == []

    with django_capture_on_commit_callbacks(execute=True):
        sent = user.post("/activate/phone/")
    assert sent.status_code == 302 and sent["Location"] == "/activate/code/"
    with django_capture_on_commit_callbacks(execute=True):
        coded = user.post("/activate/code/", {"code": latest_code(sms_outbox)})
    assert coded.status_code == 302 and coded["Location"] == "/activate/pin/"
    with django_capture_on_commit_callbacks(execute=True):
        done = user.post("/activate/pin/", {"pin": PIN, "pin_again": PIN})
    assert done.status_code == 302 and done["Location"] == "/activate/done/"

    ava.refresh_from_db()
    assert ava.status == BlinkUser.Status.ACTIVE and str(ava.phone) == PHONE
    assert ava.activated_at == ACTIVATED and ava.pending_phone is None
    assert check_password(PIN, ava.pin_hash) and not ava.pin_missing()
    assert sms_outbox[-1]["body"].startswith("Your Blink PIN for Acme IT is set.")
    assert "Text RESET and your PIN here." in sms_outbox[-1]["body"]
    [pin_set] = AuditEvent.objects.filter(action="blink_user.pin_set")
    assert pin_set.detail["pin"] == "set"
    assert not AuditEvent.objects.filter(action="blink_user.activate").exists()
    assert "No PIN" not in admin.get("/users/").content.decode()
    # The link worked once.
    assert Browser().get(path_of(link_in(email))).status_code == 404


def test_while_choosing_the_user_keeps_blink(
    login: Callable[..., Browser], owner: Any, ava: BlinkUser,
    sms_outbox: list[locmem.SentSms], django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    ask(login(owner), ava, django_capture_on_commit_callbacks)
    user = Browser()
    user.get(path_of(link_in(mail.outbox[-1])))
    with django_capture_on_commit_callbacks(execute=True):
        user.post("/activate/phone/")

    ava.refresh_from_db()
    assert ava.status == BlinkUser.Status.ACTIVE and str(ava.phone) == PHONE
    code_page = user.get("/activate/code/").content.decode()
    assert "•••• 0123" in code_page and "Use a different number" not in code_page
    # A wrong code counts, as in activation, and changes nothing else.
    wrong = user.post("/activate/code/", {"code": "000000"})
    assert wrong.status_code == 400
    assert VerificationCode.objects.get(blink_user=ava, used_at__isnull=True).attempts == 1
    # The PIN page cannot be reached without the code.
    skipped = user.post("/activate/pin/", {"pin": PIN, "pin_again": PIN})
    assert skipped.status_code == 302 and skipped["Location"] == "/activate/code/"
    ava.refresh_from_db()
    assert ava.pin_hash == "" and ava.is_active()


def test_a_number_changed_meanwhile_must_be_confirmed_instead(
    login: Callable[..., Browser], owner: Any, ava: BlinkUser,
    sms_outbox: list[locmem.SentSms], django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """The code proved the number the user had; an admin who changed it meanwhile must
    not see the old one come back with the PIN."""
    new_phone = "+14155550177"
    ask(login(owner), ava, django_capture_on_commit_callbacks)
    user = Browser()
    user.get(path_of(link_in(mail.outbox[-1])))
    with django_capture_on_commit_callbacks(execute=True):
        user.post("/activate/phone/")
    user.post("/activate/code/", {"code": latest_code(sms_outbox)})
    BlinkUser.objects.filter(pk=ava.pk).update(phone=new_phone)

    refused = user.post("/activate/pin/", {"pin": PIN, "pin_again": PIN})

    assert refused.status_code == 302 and refused["Location"] == "/activate/code/"
    ava.refresh_from_db()
    assert str(ava.phone) == new_phone and ava.pin_hash == ""
    # A new code goes to the number the user has now, and that one finishes it.
    with django_capture_on_commit_callbacks(execute=True):
        user.post("/activate/code/", {"resend": "1"})
    user.post("/activate/code/", {"code": latest_code(sms_outbox, phone=new_phone)})
    with django_capture_on_commit_callbacks(execute=True):
        done = user.post("/activate/pin/", {"pin": PIN, "pin_again": PIN})
    assert done["Location"] == "/activate/done/"
    ava.refresh_from_db()
    assert str(ava.phone) == new_phone and check_password(PIN, ava.pin_hash)


def test_a_link_left_over_once_the_user_has_a_pin_leads_nowhere(
    login: Callable[..., Browser], owner: Any, ava: BlinkUser,
    sms_outbox: list[locmem.SentSms], django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    admin = login(owner)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        admin.post(f"/users/{ava.pk}/ask-pin")
    # The user chooses a PIN (from some earlier link) before the email task runs.
    BlinkUser.objects.filter(pk=ava.pk).update(pin_hash="pbkdf2_sha256$x")
    for callback in queued:
        callback()
    assert mail.outbox == []
    assert BlinkUser.objects.get(pk=ava.pk).activation_email_status == "sent"

    # A live link of a user who has a PIN (say, an old activation link) does nothing.
    BlinkUser.objects.filter(pk=ava.pk).update(pin_hash="")
    ask(admin, ava, django_capture_on_commit_callbacks)
    user = Browser()
    assert user.get(path_of(link_in(mail.outbox[-1]))).status_code == 302
    BlinkUser.objects.filter(pk=ava.pk).update(pin_hash="pbkdf2_sha256$x")
    assert user.get("/activate/phone/").status_code == 404
    assert user.post("/activate/phone/").status_code == 404
    assert sms_outbox == []


@pytest.mark.parametrize("case", ["has a pin", "pin not needed", "no email", "invited"])
def test_only_a_user_who_needs_a_pin_is_asked(
    login: Callable[..., Browser], owner: Any, ava: BlinkUser, pin_client: Client,
    django_capture_on_commit_callbacks: Callable[..., Any], case: str,
) -> None:
    if case == "has a pin":
        BlinkUser.objects.filter(pk=ava.pk).update(pin_hash="pbkdf2_sha256$x")
    elif case == "pin not needed":
        Client.objects.filter(pk=pin_client.pk).update(sms_reset_needs_pin=False)
    elif case == "no email":
        BlinkUser.objects.filter(pk=ava.pk).update(email="")
    else:
        BlinkUser.objects.filter(pk=ava.pk).update(status=BlinkUser.Status.INVITED)
    admin = login(owner)
    assert f'href="/users/{ava.pk}/ask-pin"' not in admin.get("/users/").content.decode()

    page = ask(admin, ava, django_capture_on_commit_callbacks).content.decode()

    assert ("has no email address" in page) == (case == "no email")
    assert ("does not need a PIN" in page) == (case != "no email")
    assert mail.outbox == []
    [refused] = AuditEvent.objects.filter(action="blink_user.pin_ask")
    assert refused.result == "refused" and refused.detail["channel"] == "console"


def test_a_reader_cannot_ask(login: Callable[..., Browser], reader: Any, ava: BlinkUser,
                             django_capture_on_commit_callbacks: Callable[..., Any]) -> None:
    browser = login(reader)
    assert browser.get(f"/users/{ava.pk}/ask-pin").status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        assert browser.post(f"/users/{ava.pk}/ask-pin").status_code == 403
        assert browser.post(f"/clients/{ava.client_id}/ask-pins").status_code == 403
    assert mail.outbox == []


def test_the_client_page_asks_every_user_without_a_pin_at_once(
    login: Callable[..., Browser], owner: Any, pin_client: Client, demo_connection: Connection,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    without = [demo_blink_user(pin_client, demo_connection, f"+1415555014{n}") for n in range(3)]
    with_pin = demo_blink_user(pin_client, demo_connection, "+14155550150")
    BlinkUser.objects.filter(pk=with_pin.pk).update(pin_hash="pbkdf2_sha256$x")
    for n, user in enumerate(without):
        BlinkUser.objects.filter(pk=user.pk).update(email=f"user{n}@globex.example" if n else "")
    admin = login(owner)
    page = admin.get(f"/clients/{pin_client.pk}/").content.decode()
    assert "3 Active users of Globex have no PIN" in page

    with django_capture_on_commit_callbacks(execute=True):
        answer = admin.post(f"/clients/{pin_client.pk}/ask-pins", follow=True)

    text = answer.content.decode()
    assert "A link to choose a PIN is on its way to 2 users." in text
    assert "1 user without a PIN has no email address" in text
    assert sorted(email.to[0] for email in mail.outbox) == ["user1@globex.example",
                                                            "user2@globex.example"]
    assert all(email.subject == "Choose a PIN for Blink at Acme IT" for email in mail.outbox)
    assert sorted(AuditEvent.objects.filter(action="blink_user.pin_ask")
                  .values_list("target_label", flat=True)) == sorted(
        u.username for u in without[1:])


def test_the_client_page_asks_nobody_when_the_client_needs_no_pin(
    login: Callable[..., Browser], owner: Any, ava: BlinkUser, pin_client: Client,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    Client.objects.filter(pk=pin_client.pk).update(sms_reset_needs_pin=False)
    admin = login(owner)
    assert "no PIN" not in admin.get(f"/clients/{pin_client.pk}/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        answer = admin.post(f"/clients/{pin_client.pk}/ask-pins", follow=True)
    page = answer.content.decode()
    assert answer.status_code == 200 and mail.outbox == []
    assert "needs no PIN: nobody was asked" in page and "no email address" not in page
    assert not AuditEvent.objects.filter(action="blink_user.pin_ask").exists()


def test_nobody_of_an_archived_client_is_asked(
    login: Callable[..., Browser], owner: Any, ava: BlinkUser, pin_client: Client,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    Client.objects.filter(pk=pin_client.pk).update(archived_at=ACTIVATED)
    admin = login(owner)
    assert f'href="/users/{ava.pk}/ask-pin"' not in admin.get("/users/").content.decode()
    assert "no PIN" not in admin.get(f"/clients/{pin_client.pk}/").content.decode()

    one = ask(admin, ava, django_capture_on_commit_callbacks).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        every = admin.post(f"/clients/{pin_client.pk}/ask-pins", follow=True).content.decode()

    assert "archived" in one and "archived" in every
    assert mail.outbox == []
    assert [e.result for e in AuditEvent.objects.filter(action="blink_user.pin_ask")] == [
        "refused"]
