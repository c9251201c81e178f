"""Reset Password and Unlock in the console, on the demo directory with tasks run in-process:
confirmation, the request's status page and its JSON, and the password kept from everyone
but the user's phone."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from unittest import mock

import pytest
from django.test import Client as Browser
from django.utils import timezone

from blink.audit import SYSTEM, Actor
from blink.models import AuditEvent, BlinkUser, ResetRequest
from blink.resets import reset_request_create
from clients.models import Client
from directory.demo import POLICY, DemoDirectory
from directory.models import Connection, Entry
from directory.services import connection_save
from sms.models import Message, OptOut
from tests.conftest import demo_blink_user, password_in

PHONE = "+14155550166"
SUPPORT = "help@acme-it.example"
ADMIN = Actor(label="olivia", ip="127.0.0.1")




@pytest.fixture
def demo(acme_client: Client, demo_connection: Connection) -> Connection:
    acme_client.company.support_email = SUPPORT
    acme_client.company.save()
    return demo_connection


@pytest.fixture
def ava(acme_client: Client, demo: Connection) -> BlinkUser:
    return demo_blink_user(acme_client, demo, PHONE)


class Responses:
    """Every page the admin's browser was given, to show the password was in none."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.bodies: list[str] = []

    def get(self, path: str, **data: str):
        response = self.browser.get(path, data)
        self.bodies.append(response.content.decode())
        return response

    def post(self, path: str, data: dict[str, str] | None = None):
        response = self.browser.post(path, data or {})
        self.bodies.append(response.content.decode())
        return response


def ask(browser: Browser, blink_user: BlinkUser, action: str,
        captured: Callable[..., AbstractContextManager[object]], *, execute: bool = True,
        data: dict[str, str] | None = None):
    """POST the confirmation, with the worker's part run in-process (unless not ``execute``)."""
    with captured(execute=execute):
        return browser.post(f"/users/{blink_user.pk}/{action}", data or {})


def request_id(response) -> int:
    assert response.status_code == 302, response.content
    match = re.fullmatch(r"/users/requests/(\d+)/(\?.*)?", response["Location"])
    assert match, response["Location"]
    return int(match.group(1))


def steps(page: str) -> list[tuple[str, str, str]]:
    """The status page's steps: (state, label, mark)."""
    return re.findall(r'<li data-state="(\w+)"[^>]*>(\w+) <span data-mark>([^<]*)</span>', page)


def status_json(browser: Browser, pk: int) -> dict[str, object]:
    response = browser.get(f"/users/requests/{pk}/status")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    return json.loads(response.content)


# The journey


def test_reset_password_from_the_console_texts_a_working_password_no_one_else_sees(
    login, owner, ava, demo, sms_outbox, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    admin = Responses(login(owner))
    users = admin.get("/users/").content.decode()
    assert f'href="/users/{ava.pk}/reset-password">Reset Password…</a>' in users

    confirm = admin.get(f"/users/{ava.pk}/reset-password", client=str(ava.client_id))
    page = confirm.content.decode()
    assert confirm.status_code == 200
    assert f"Reset {ava}&#x27;s password?" in page and "•••• 0166" in page
    assert "You will not see the password" in page
    assert not ResetRequest.objects.exists()  # asking for confirmation changes nothing

    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(f"/users/{ava.pk}/reset-password",
                              {"client": str(ava.client_id)})
    pk = request_id(response)
    assert response["Location"].endswith(f"?client={ava.client_id}")
    status_page = admin.get(response["Location"]).content.decode()
    assert "Sent" in status_page and "•••• 0166" in status_page
    assert f'data-status-url="/users/requests/{pk}/status"' in status_page
    assert json.loads(admin.get(f"/users/requests/{pk}/status").content) == {
        "status": "sent", "label": "Sent", "reason": "", "finished": True, "step": 2,
        "detail": f"The password was reset and texted to •••• 0166. {ava} must choose a new "
                  "one at the next Windows sign-in.",
        "steps": [{"label": label, "state": "done", "mark": "✓"}
                  for label in ("Queued", "Resetting", "Sent")],
    }

    [sms] = sms_outbox
    assert sms["to"] == PHONE
    assert "you will be asked to choose a new one" in sms["body"]
    password = password_in(sms["body"])
    assert len(password) >= POLICY.min_length
    assert DemoDirectory(demo.pk).sign_in(ava.object_id, password) == "must_change"

    reset = ResetRequest.objects.get(pk=pk)
    assert (reset.status, reset.channel, reset.kind) == ("sent", "console", "reset")
    assert reset.requested_by == owner and reset.sealed_password == ""
    admin.get(f"/users/requests/{pk}/")
    admin.get("/users/")
    admin.get("/audit/")
    stored = [
        str(list(ResetRequest.objects.values())),
        str(list(Message.objects.values())),
        str(list(AuditEvent.objects.values())),
    ]
    for where, text in [("a response", "\n".join(admin.bodies)), ("the logs", caplog.text),
                        ("the database", "\n".join(stored))]:
        assert password not in text, f"the password is in {where}"
    # One event for the admin's request and one for the worker's outcome, nothing else.
    # From where: the admin's address, on both.
    assert list(AuditEvent.objects.filter(target_label=ava.username)
                .values_list("action", "result", "actor_label", "ip_address")) == [
        ("reset.run", "ok", owner.username, "127.0.0.1"),
        ("reset.request", "ok", owner.username, "127.0.0.1")]
    assert reset.ip_address == "127.0.0.1"


def test_unlock_clears_the_lockout_and_keeps_the_password(
    login, admin, ava, demo, sms_outbox, django_capture_on_commit_callbacks
):
    directory = DemoDirectory(demo.pk)
    directory.reset_password(ava.object_id, "Known-Pass-4466", must_change=False)
    for _ in range(POLICY.lockout_threshold):
        directory.sign_in(ava.object_id, "not-the-password")
    assert directory.sign_in(ava.object_id, "Known-Pass-4466") == "locked"
    browser = login(admin)
    assert f"Unlock {ava}" in browser.get(f"/users/{ava.pk}/unlock").content.decode()

    pk = request_id(ask(browser, ava, "unlock", django_capture_on_commit_callbacks))

    progress = status_json(browser, pk)
    assert (progress["status"], progress["finished"]) == ("sent", True)
    assert progress["detail"] == "The account is unlocked; Blink texted •••• 0166 to say so."
    page = browser.get(f"/users/requests/{pk}/").content.decode()
    assert "Unlock for" in page and "Unlocking <span data-mark>✓" in page
    assert directory.sign_in(ava.object_id, "Known-Pass-4466") == "ok"
    [sms] = sms_outbox
    assert "is unlocked. Your password has not changed." in sms["body"]
    assert list(AuditEvent.objects.filter(target_label=ava.username)
                .values_list("action", flat=True)) == ["unlock.run", "unlock.request"]


def test_a_protected_account_fails_with_the_reason_and_the_user_is_told_without_a_password(
    login, owner, acme_client, demo, sms_outbox, django_capture_on_commit_callbacks
):
    dana = demo_blink_user(acme_client, demo, PHONE, protected=True)
    browser = login(owner)

    pk = request_id(ask(browser, dana, "reset-password", django_capture_on_commit_callbacks))

    page = browser.get(f"/users/requests/{pk}/").content.decode()
    assert "Failed" in page and "privileged" in page
    assert f'href="/users/{dana.pk}/reset-password"' in page  # Try again
    assert steps(page) == [("done", "Queued", "✓"), ("failed", "Resetting", "✗"),
                           ("todo", "Sent", "")]
    progress = status_json(browser, pk)
    assert progress["status"] == "failed" and progress["finished"] is True
    assert "privileged (a member of Domain Admins)" in str(progress["reason"])
    assert progress["detail"] == (f"Blink texted {dana} that it could not do it and to "
                                  f"contact {SUPPORT}.")
    assert [m["body"] for m in sms_outbox] == [
        f"Blink could not reset your password just now. Please contact {SUPPORT}."]
    reset = ResetRequest.objects.get(pk=pk)
    assert reset.status == "failed" and reset.sealed_password == ""
    assert AuditEvent.objects.filter(action="reset.run", result="failed",
                                     target_label=dana.username).count() == 1


# Refusals


def test_the_confirmation_warns_when_the_password_never_expires(login, owner, ava):
    browser = login(owner)
    never = 'this account was set to "Password never expires"'
    assert never not in browser.get(f"/users/{ava.pk}/reset-password").content.decode()

    Entry.objects.filter(connection=ava.connection, object_id=ava.object_id).update(
        password_never_expires=True)

    assert never in browser.get(f"/users/{ava.pk}/reset-password").content.decode()
    # Unlocking does not touch the password: nothing to warn about.
    assert never not in browser.get(f"/users/{ava.pk}/unlock").content.decode()


def test_a_user_who_has_not_activated_is_refused_on_the_page(
    login, owner, ava, django_capture_on_commit_callbacks
):
    BlinkUser.objects.filter(pk=ava.pk).update(status=BlinkUser.Status.VERIFYING_PHONE)
    response = ask(login(owner), ava, "reset-password", django_capture_on_commit_callbacks)
    assert response.status_code == 409
    page = response.content.decode()
    assert "Only Active Blink users can be reset" in page and 'role="alert"' in page
    assert ">Reset Password</button>" not in page
    assert not ResetRequest.objects.exists()
    # The admin's refused action is in the audit trail, with its reason (SECURITY.md 15).
    [event] = AuditEvent.objects.filter(action__startswith="reset.")
    assert (event.action, event.result, event.target_label, event.actor_label) == (
        "reset.request", "refused", ava.username, "olivia")
    assert event.detail["channel"] == "console" and "Only Active" in event.detail["reason"]
    assert event.ip_address == "127.0.0.1"


def test_an_archived_client_is_refused(login, owner, ava, django_capture_on_commit_callbacks):
    Client.objects.filter(pk=ava.client_id).update(archived_at=timezone.now())
    response = ask(login(owner), ava, "unlock", django_capture_on_commit_callbacks)
    assert response.status_code == 409
    assert "archived" in response.content.decode()
    assert not ResetRequest.objects.exists()
    assert AuditEvent.objects.get(action="unlock.request").result == "refused"


def test_a_user_whose_phone_texted_stop_is_refused_and_keeps_their_password(
    login, owner, ava, demo, sms_outbox, django_capture_on_commit_callbacks
):
    OptOut.objects.create(phone=ava.phone)
    with mock.patch.object(DemoDirectory, "reset_password") as directory_reset:
        response = ask(login(owner), ava, "reset-password", django_capture_on_commit_callbacks)

    assert response.status_code == 409
    page = response.content.decode()
    assert "texted STOP" in page and "START" in page
    directory_reset.assert_not_called()
    assert not ResetRequest.objects.exists() and sms_outbox == []


def test_a_user_whose_password_lives_in_a_missing_ad_connection_is_refused_not_a_500(
    login, owner, acme_client, django_capture_on_commit_callbacks
):
    entra = connection_save(client=acme_client, actor=SYSTEM, kind="entra",
                            parameters={"tenant_id": "t", "client_id": "c"},
                            secrets={"client_secret": "s"})
    Entry.objects.create(connection=entra, kind="user", object_id="synced-1", name="Sam Synced",
                         username="sam@globex.example", on_premises_sync=True)
    sam = BlinkUser.objects.create(client=acme_client, connection=entra, object_id="synced-1",
                                   username="sam@globex.example", phone=PHONE, status="active")
    response = ask(login(owner), sam, "reset-password", django_capture_on_commit_callbacks)
    assert response.status_code == 409
    assert "on-premises Active Directory" in response.content.decode()
    assert not ResetRequest.objects.exists()


def test_a_second_click_joins_the_request_under_way(
    login, owner, ava, sms_outbox, django_capture_on_commit_callbacks
):
    browser = login(owner)
    first = request_id(ask(browser, ava, "reset-password", django_capture_on_commit_callbacks,
                           execute=False))
    second = ask(browser, ava, "reset-password", django_capture_on_commit_callbacks,
                 execute=False)
    assert request_id(second) == first
    assert "already under way" in browser.get(second["Location"]).content.decode()
    assert ResetRequest.objects.count() == 1
    assert AuditEvent.objects.filter(action="reset.request").count() == 1
    # An unlock is another request.
    assert request_id(ask(browser, ava, "unlock", django_capture_on_commit_callbacks,
                          execute=False)) != first


# Personas


@pytest.fixture
def ava_request(ava: BlinkUser, django_capture_on_commit_callbacks) -> ResetRequest:
    with django_capture_on_commit_callbacks(execute=True):
        return reset_request_create(blink_user=ava, actor=ADMIN, channel="console")


def test_who_may_reset_unlock_and_watch(
    persona, ava, ava_request, django_capture_on_commit_callbacks
):
    name, browser = persona
    pages = {
        "confirm reset": lambda: browser.get(f"/users/{ava.pk}/reset-password"),
        "confirm unlock": lambda: browser.get(f"/users/{ava.pk}/unlock"),
        "status page": lambda: browser.get(f"/users/requests/{ava_request.pk}/"),
        "status json": lambda: browser.get(f"/users/requests/{ava_request.pk}/status"),
    }
    expected = {
        "owner": dict.fromkeys(pages, 200),
        "admin": dict.fromkeys(pages, 200),
        # Read-only members may watch a request (it shows no secret) but start none.
        "reader": {"confirm reset": 403, "confirm unlock": 403, "status page": 200,
                   "status json": 200},
        "outsider": dict.fromkeys(pages, 404),
    }[name]
    assert {page: open_page().status_code for page, open_page in pages.items()} == expected

    before = ResetRequest.objects.count()
    for action in ("reset-password", "unlock"):
        response = ask(browser, ava, action, django_capture_on_commit_callbacks)
        assert response.status_code == {"owner": 302, "admin": 302, "reader": 403,
                                        "outsider": 404}[name]
    made = ResetRequest.objects.count() - before
    assert made == (2 if name in ("owner", "admin") else 0)
    assert AuditEvent.objects.filter(action__in=["reset.request", "unlock.request"]).count() \
        == 1 + made


def test_the_reader_sees_no_reset_buttons(login, reader, ava, ava_request):
    page = login(reader).get(f"/users/requests/{ava_request.pk}/").content.decode()
    assert "Sent" in page and "Try again" not in page
    assert "Reset Password…" not in login(reader).get("/users/").content.decode()


def test_only_get_and_post(login, owner, ava, ava_request):
    browser = login(owner)
    assert browser.put(f"/users/{ava.pk}/reset-password").status_code == 405
    assert browser.post(f"/users/requests/{ava_request.pk}/status").status_code == 405


# The status page and its JSON


def test_the_status_moves_from_queued_to_sent(
    login, owner, ava, sms_outbox, django_capture_on_commit_callbacks
):
    from blink.tasks import reset_run

    browser = login(owner)
    pk = request_id(ask(browser, ava, "reset-password", django_capture_on_commit_callbacks,
                        execute=False))
    page = browser.get(f"/users/requests/{pk}/").content.decode()
    assert status_json(browser, pk) == {
        "status": "queued", "label": "Queued", "reason": "", "finished": False, "step": 0,
        "detail": "Waiting for a Blink worker to pick it up.",
        "steps": [{"label": "Queued", "state": "current", "mark": "…"},
                  {"label": "Resetting", "state": "todo", "mark": ""},
                  {"label": "Sent", "state": "todo", "mark": ""}]}
    # Without JavaScript the page reloads itself; with it, reset_status.js polls the JSON.
    assert '<noscript><meta http-equiv="refresh" content="3">' in page
    assert steps(page) == [("current", "Queued", "…"), ("todo", "Resetting", ""),
                           ("todo", "Sent", "")]
    assert 'data-finished="false"' in page
    assert re.search(r'<script src="/static/js/reset_status\.js" defer>', page)
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "no inline script"

    ResetRequest.objects.filter(pk=pk).update(status="running", started_at=timezone.now())
    progress = status_json(browser, pk)
    assert (progress["status"], progress["label"], progress["finished"]) == (
        "running", "Resetting", False)
    assert isinstance(progress["steps"], list)
    assert [step["state"] for step in progress["steps"]] == ["done", "current", "todo"]

    ResetRequest.objects.filter(pk=pk).update(status="queued", started_at=None)
    with django_capture_on_commit_callbacks(execute=False) as sms_callbacks:
        reset_run.delay(pk)  # the worker: the directory is done, the SMS not yet handed over
    progress = status_json(browser, pk)
    assert (progress["status"], progress["label"], progress["finished"]) == (
        "sending", "Texting", False)
    assert progress["detail"] == f"The password was reset; Blink is texting {ava}."
    Message.objects.filter(kind="reset").update(error_code="20500")  # Twilio said 500
    assert "Blink tries again with the same text" in str(status_json(browser, pk)["detail"])
    for callback in sms_callbacks:
        callback()
    assert status_json(browser, pk)["status"] == "sent"
    page = browser.get(f"/users/requests/{pk}/").content.decode()
    assert "<noscript>" not in page and 'data-finished="true"' in page
    assert steps(page) == [("done", "Queued", "✓"), ("done", "Resetting", "✓"),
                           ("done", "Sent", "✓")]
    assert len(sms_outbox) == 1


def test_a_text_the_provider_refused_shows_as_failed(
    login, owner, ava, ava_request, django_capture_on_commit_callbacks
):
    ava_request.refresh_from_db()
    assert ava_request.message is not None
    Message.objects.filter(pk=ava_request.message.pk).update(
        status="failed", error_message="The number does not exist or is no longer in service.")
    progress = status_json(login(owner), ava_request.pk)
    assert progress["status"] == "failed" and progress["finished"] is True
    assert progress["detail"] == f"The password was reset, but {ava} did not get the text."
    assert "could not be delivered: The number does not exist" in str(progress["reason"])


def test_another_companys_request_is_not_found(login, outsider, ava_request):
    browser = login(outsider)
    assert browser.get(f"/users/requests/{ava_request.pk}/status").status_code == 404
    assert browser.get("/users/requests/999999/").status_code == 404
