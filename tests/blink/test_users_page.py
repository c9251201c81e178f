"""Blink Users: every Blink user with status, search, filters and pages, and the row actions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from blink.audit import SYSTEM
from blink.forms_console import PHONE_UNAVAILABLE
from blink.invitations import PhoneNeedsProof, blink_user_update
from blink.models import AuditEvent, BlinkUser
from clients.models import Client
from clients.services import client_archive, client_create
from directory.models import Connection, Entry
from directory.services import connection_save
from sms.models import Message

Status = BlinkUser.Status


@pytest.fixture
def globex(acme_client) -> Connection:
    return connection_save(client=acme_client, actor=SYSTEM, kind="demo", parameters={},
                           secrets={})


@pytest.fixture
def make_user(globex):
    counter = iter(range(10_000))

    def make(name: str, *, status: str = Status.INVITED, connection: Connection = globex,
             **fields: object) -> BlinkUser:
        n = next(counter)
        username = name.split()[0].lower() + str(n)
        fields.setdefault("email", f"{username}@globex.example")
        return BlinkUser.objects.create(
            client=connection.client, connection=connection, object_id=f"obj-{username}",
            username=username, display_name=name, status=status, **fields,
        )

    return make


@pytest.fixture
def alice(make_user) -> BlinkUser:
    return make_user("Alice Active", status=Status.ACTIVE, phone="+12015550123",
                     last_reset_at=datetime(2025, 3, 4, 5, 6, tzinfo=UTC),
                     locked_since=datetime(2025, 3, 5, 7, 8, tzinfo=UTC))


@pytest.fixture
def rival_user(rival_client) -> BlinkUser:
    connection = connection_save(client=rival_client, actor=SYSTEM, kind="demo",
                                 parameters={}, secrets={})
    return BlinkUser.objects.create(client=rival_client, connection=connection,
                                    object_id="obj-rival", username="rrival",
                                    display_name="Rita Rival", email="rita@rival.example")


def names(page: str) -> list[str]:
    return re.findall(r'name="ids" value="\d+" form="bulk-form" aria-label="Tick ([^"]+)"', page)


def sms(blink_user: BlinkUser, status: str, *, minutes_ago: int = 0,
        direction: str = Message.Direction.OUTBOUND) -> Message:
    return Message.objects.create(
        company=blink_user.client.company, blink_user=blink_user, direction=direction,
        phone="+12015550123", body="…", status=status,
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


# The list


def test_users_page_per_persona(persona, alice, rival_user, acme_client):
    name, browser = persona
    response = browser.get("/users/")
    assert response.status_code == 200
    page = response.content.decode()
    assert ("Alice Active" in page) == (name != "outsider")
    assert ("Rita Rival" in page) == (name == "outsider")
    assert ('class="menu"' in page) == (name in ("owner", "admin") or name == "outsider")
    filtered = browser.get("/users/", {"client": acme_client.pk})
    assert filtered.status_code == (404 if name == "outsider" else 200)


def test_reader_gets_no_actions(login, reader, alice):
    page = login(reader).get("/users/").content.decode()
    assert "Alice Active" in page
    assert 'class="menu"' not in page and "Resend activation" not in page


def test_a_row_shows_what_an_admin_needs(login, owner, alice, make_user):
    make_user("Nina Needs", status=Status.NEEDS_EMAIL, email="")
    page = login(owner).get("/users/").content.decode()
    assert "•••• 0123" in page and "2015550123" not in page
    assert "2025-03-04 05:06" in page  # last reset
    assert "Locked</span>" in page and ">Mar 5, 07:08</time>" in page
    assert ">Active</span>" in page and ">Needs email</span>" in page
    assert "<th>Client</th>" in page and "<td>Globex</td>" in page


def test_failed_deliveries_are_marked(login, owner, make_user):
    bounced = make_user("Bea Bounced", activation_email_status="failed",
                        activation_email_error="The mail server refused it.")
    failed = make_user("Fred Failed", status=Status.VERIFYING_PHONE)
    sms(failed, Message.Status.DELIVERED, minutes_ago=5)
    sms(failed, Message.Status.UNDELIVERED)
    recovered = make_user("Rex Recovered", status=Status.VERIFYING_PHONE)
    sms(recovered, Message.Status.FAILED, minutes_ago=5)
    sms(recovered, Message.Status.DELIVERED)
    sms(recovered, Message.Status.RECEIVED, direction=Message.Direction.INBOUND)
    page = login(owner).get("/users/").content.decode()
    rows = {names(row)[0]: row for row in page.split("<tr>")[2:]}
    assert "Email failed" in rows[str(bounced)]
    assert 'title="The mail server refused it."' in rows[str(bounced)]
    assert "SMS failed" in rows[str(failed)]
    assert "failed</span>" not in rows[str(recovered)]


def test_an_account_whose_password_never_expires_is_marked(login, owner, globex, make_user,
                                                           rival_user):
    never = make_user("Nora Never", status=Status.ACTIVE, phone="+12015550124")
    other = make_user("Otto Other", status=Status.ACTIVE, phone="+12015550125")
    for user, flag in ((never, True), (other, False)):
        Entry.objects.create(connection=globex, kind=Entry.Kind.USER, object_id=user.object_id,
                             name=user.display_name, username=user.username,
                             password_never_expires=flag)
    # The same object id on another connection says nothing about this user.
    Entry.objects.create(connection=rival_user.connection, kind=Entry.Kind.USER,
                         object_id=other.object_id, name="Someone else",
                         password_never_expires=True)

    page = login(owner).get("/users/").content.decode()

    rows = {names(row)[0]: row for row in page.split("<tr>")[2:]}
    assert ">Password never expires</span>" in rows[str(never)]
    assert "never expires" not in rows[str(other)]


def test_search_status_and_client_filters(login, owner, company, alice, make_user):
    make_user("Bob Invited", email="bob@corp.example")
    make_user("Carl Verifying", status=Status.VERIFYING_PHONE)
    other = client_create(company=company, actor=SYSTEM, name="Hooli")
    hooli = connection_save(client=other, actor=SYSTEM, kind="demo", parameters={},
                            secrets={})
    make_user("Hank Hooli", connection=hooli)
    browser = login(owner)

    def listed(**params: object) -> list[str]:
        response = browser.get("/users/", params)
        assert response.status_code == 200
        return names(response.content.decode())

    assert listed() == ["Alice Active", "Bob Invited", "Carl Verifying", "Hank Hooli"]
    assert listed(q="corp.example") == ["Bob Invited"]
    assert listed(q="carl") == ["Carl Verifying"]
    assert listed(q="hank0") == [] and listed(q="hank3") == ["Hank Hooli"]
    assert listed(status="active") == ["Alice Active"]
    assert listed(client=other.pk) == ["Hank Hooli"]
    assert listed(client=other.pk, status="active") == []
    page = browser.get("/users/", {"client": other.pk}).content.decode()
    assert "<th>Client</th>" not in page


@pytest.mark.parametrize("params", [
    {"status": "sleeping"}, {"status": ["active", "invited"]}, {"q": "x" * 10_000},
    {"q": "\x00"}, {"page": "-1"}, {"page": "abc"}, {"client": "abc"},
])
def test_bad_filters_say_so_without_failing(login, owner, alice, params):
    response = login(owner).get("/users/", params)
    assert response.status_code in (200, 404)
    if response.status_code == 200 and set(params) != {"page"}:
        assert 'class="errors"' in response.content.decode()


def test_fifty_to_a_page(login, owner, make_user):
    for n in range(53):
        make_user(f"User {n:02d}")
    browser = login(owner)
    first = browser.get("/users/").content.decode()
    assert len(names(first)) == 50 and "Page 1 of 2" in first
    second = browser.get("/users/", {"page": 2}).content.decode()
    assert names(second) == ["User 50", "User 51", "User 52"]


def test_queries_do_not_grow_with_the_page(login, owner, make_user, acme_client):
    browser = login(owner)

    def queries() -> int:
        with CaptureQueriesContext(db) as context:
            response = browser.get("/users/")
        assert response.status_code == 200
        return len(context.captured_queries)

    def add(count: int) -> None:
        for n in range(count):
            user = make_user(f"Person {n}", status=Status.ACTIVE)
            user.phone = f"+1201555{user.pk:04d}"
            user.save()
            sms(user, Message.Status.FAILED if n % 2 else Message.Status.DELIVERED)

    add(3)
    small = queries()
    add(60)
    assert queries() == small
    assert small <= 10
    with CaptureQueriesContext(db) as context:
        browser.get("/users/", {"client": acme_client.pk, "q": "Person", "status": "active",
                                "page": 2})
    assert len(context.captured_queries) <= small + 2  # the client is looked up and checked


def test_the_row_menu(login, owner, alice, make_user):
    bob = make_user("Bob Invited")
    page = login(owner).get("/users/").content.decode()
    rows = page.split("<tr>")
    alice_row = next(row for row in rows if "Alice Active" in row)
    bob_row = next(row for row in rows if "Bob Invited" in row)
    for label in ["Edit", "Reset User…", "Remove from Blink…"]:
        assert f">{label}</a>" in alice_row and f">{label}</a>" in bob_row
    assert f'href="/users/{alice.pk}/reset-password">Reset Password…</a>' in alice_row
    assert f'href="/users/{alice.pk}/unlock">Unlock…</a>' in alice_row
    assert "Reset Password" not in bob_row and "Unlock" not in bob_row
    assert f'href="/users/{bob.pk}/edit"' in bob_row


# Edit


@pytest.mark.parametrize("method", ["get", "post"])
def test_edit_per_persona(persona, alice, method):
    name, browser = persona
    response = getattr(browser, method)(f"/users/{alice.pk}/edit",
                                        {"email": "new@globex.example"})
    expected = {"owner": {"get": 200, "post": 302}, "admin": {"get": 200, "post": 302},
                "reader": 403, "outsider": 404}[name]
    expected = expected[method] if isinstance(expected, dict) else expected
    assert response.status_code == expected
    alice.refresh_from_db()
    assert (alice.email == "new@globex.example") == (expected == 302)


def test_edit_saves_the_email_and_a_phone_read_in_the_company_country(
    login, owner, company, make_user
):
    company.default_country = "GB"
    company.save()
    bob = make_user("Bob Invited")
    browser = login(owner)
    page = browser.get(f"/users/{bob.pk}/edit").content.decode()
    assert f'value="{bob.email}"' in page
    response = browser.post(f"/users/{bob.pk}/edit?client=1",
                            {"email": "bob@new.example", "phone": "07400 123456",
                             "client": bob.client_id, "q": "Bob"})
    assert response.status_code == 302
    assert response["Location"] == f"/users/?client={bob.client_id}&q=Bob"
    bob.refresh_from_db()
    assert (bob.email, str(bob.phone)) == ("bob@new.example", "+447400123456")
    event = AuditEvent.objects.get(action="blink_user.update")
    assert event.detail["changed"]["phone"] == ["", "•••• 3456"]
    # An empty phone keeps the number.
    browser.post(f"/users/{bob.pk}/edit", {"email": "bob@new.example", "phone": ""})
    bob.refresh_from_db()
    assert str(bob.phone) == "+447400123456"


def test_an_active_users_phone_is_not_changed_from_the_console(login, owner, alice):
    """Passwords go to an Active user's phone, so only a number they confirmed with a code
    will do: the console offers no phone field, ignores a posted one, and points to Reset
    User."""
    browser = login(owner)
    page = browser.get(f"/users/{alice.pk}/edit").content.decode()
    assert 'name="phone"' not in page
    assert "•••• 0123" in page
    assert f'href="/users/{alice.pk}/reset"' in page

    response = browser.post(f"/users/{alice.pk}/edit",
                            {"email": "alice@new.example", "phone": "+12015550177"})

    assert response.status_code == 302
    alice.refresh_from_db()
    assert (alice.email, str(alice.phone)) == ("alice@new.example", "+12015550123")
    event = AuditEvent.objects.get(action="blink_user.update")
    assert list(event.detail["changed"]) == ["email"]


def test_the_service_refuses_a_new_number_for_a_user_who_just_became_active(
    owner, make_user
):
    """The form was shown while Bob was Invited; he finished activation before the save."""
    bob = make_user("Bob Invited")
    BlinkUser.objects.filter(pk=bob.pk).update(status=Status.ACTIVE, phone="+12015550150")

    with pytest.raises(PhoneNeedsProof):
        blink_user_update(blink_user=bob, actor=SYSTEM, email=bob.email,
                          phone="+12015550177")

    fresh = BlinkUser.objects.get(pk=bob.pk)
    assert (fresh.status, str(fresh.phone)) == (Status.ACTIVE, "+12015550150")
    # The number they have is no change at all.
    blink_user_update(blink_user=bob, actor=SYSTEM, email="bob@new.example",
                      phone="+12015550150")
    fresh.refresh_from_db()
    assert (fresh.status, fresh.email) == (Status.ACTIVE, "bob@new.example")


def test_an_email_for_a_user_who_needed_one_sends_the_invitation(
    login, owner, make_user, django_capture_on_commit_callbacks
):
    nina = make_user("Nina Needs", status=Status.NEEDS_EMAIL, email="")
    page = login(owner).get(f"/users/{nina.pk}/edit").content.decode()
    assert "The directory has no email address for Nina Needs" in page
    with django_capture_on_commit_callbacks(execute=True):
        login(owner).post(f"/users/{nina.pk}/edit", {"email": "nina@globex.example"})
    nina.refresh_from_db()
    assert nina.status == Status.INVITED
    assert [m.to for m in mail.outbox] == [["nina@globex.example"]]


def test_an_email_for_an_archived_clients_user_sends_nothing_yet(
    login, owner, make_user, acme_client, django_capture_on_commit_callbacks
):
    """An archived client's activation links lead nowhere: the address is kept, and the
    admin is told to resend once the client is back."""
    nina = make_user("Nina Needs", status=Status.NEEDS_EMAIL, email="")
    client_archive(client=acme_client, actor=SYSTEM)

    with django_capture_on_commit_callbacks(execute=True):
        page = login(owner).post(f"/users/{nina.pk}/edit", {"email": "nina@globex.example"},
                                 follow=True).content.decode()

    nina.refresh_from_db()
    assert (nina.status, nina.email) == (Status.NEEDS_EMAIL, "nina@globex.example")
    assert mail.outbox == []
    assert "This client is archived" in page
    assert "Resend activation" in page


@pytest.mark.parametrize(("data", "message"), [
    ({"email": "bob@globex.example", "phone": "call me"}, "Enter a valid phone number"),
    ({"email": "bob@globex.example", "phone": "+1234567890123456"}, "Enter a valid phone"),
    ({"email": "bob@globex.example", "phone": "12345678901234567890"}, "Enter a valid phone"),
    ({"email": "bob@globex.example", "phone": "٢٠١٥٥٥٠١٢٣"}, "digits 0-9"),
    ({"email": "bob@globex.example", "phone": "+1201555\x000123"}, "Null characters"),
    ({"email": "x" * 10_000 + "@globex.example"}, "Ensure this value has at most 254"),
    ({"email": "not an email"}, "Enter a valid email address"),
    ({"email": ""}, "This field is required"),
    ({"email": "bob\x00@globex.example"}, "Null characters are not allowed"),
    ({"email": ["a@globex.example", "b@globex.example"]}, "Enter a single value"),
    ({"email": "bob@globex.example", "phone": ["+12015550100", "+12015550101"]},
     "Enter a single value"),
])
def test_bad_edits_say_what_is_wrong_and_change_nothing(login, owner, make_user, data,
                                                        message):
    bob = make_user("Bob Invited", email="bob@globex.example")
    response = login(owner).post(f"/users/{bob.pk}/edit", data)
    assert response.status_code == 200
    assert message in response.content.decode()
    fresh = BlinkUser.objects.get(pk=bob.pk)
    assert (fresh.email, fresh.phone) == ("bob@globex.example", None)
    assert not AuditEvent.objects.filter(action="blink_user.update").exists()


def test_a_phone_of_another_blink_user_is_refused_without_saying_whose(login, owner, alice,
                                                                       rival_user, make_user):
    rival_user.phone = "+12015550199"
    rival_user.save()
    bob = make_user("Bob Invited", email="bob@globex.example")
    browser = login(owner)
    for taken in ["+12015550123", "(201) 555-0199"]:
        response = browser.post(f"/users/{bob.pk}/edit",
                                {"email": "changed@globex.example", "phone": taken})
        assert response.status_code == 200
        page = response.content.decode()
        assert "This number can&#x27;t be used" in page or PHONE_UNAVAILABLE in page
        assert "Alice" not in page.split("<main>")[1].split("</form>")[0].replace(
            "Bob Invited", "")
        assert "Rita" not in page
    bob.refresh_from_db()
    assert (bob.email, bob.phone) == ("bob@globex.example", None)
    assert not AuditEvent.objects.filter(action="blink_user.update").exists()


# Reset User, Remove from Blink


@pytest.mark.parametrize("action", ["reset", "remove"])
def test_row_actions_per_persona(persona, alice, action, django_capture_on_commit_callbacks):
    name, browser = persona
    expected = {"owner": 200, "admin": 200, "reader": 403, "outsider": 404}[name]
    assert browser.get(f"/users/{alice.pk}/{action}").status_code == expected
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(f"/users/{alice.pk}/{action}")
    assert response.status_code == (302 if expected == 200 else expected)
    changed = expected == 200
    if action == "remove":
        assert BlinkUser.objects.filter(pk=alice.pk).exists() != changed
    else:
        alice.refresh_from_db()
        assert (alice.status == Status.INVITED) == changed
    assert AuditEvent.objects.filter(action__startswith="blink_user.").count() == changed


def test_reset_user_asks_first_then_starts_activation_over(
    login, owner, alice, django_capture_on_commit_callbacks
):
    browser = login(owner)
    page = browser.get(f"/users/{alice.pk}/reset", {"status": "active"}).content.decode()
    assert "Reset Alice Active?" in page and "The old link stops working" in page
    assert '<input type="hidden" name="status" value="active">' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(f"/users/{alice.pk}/reset", {"status": "active"})
    assert response["Location"] == "/users/?status=active"
    alice.refresh_from_db()
    assert (alice.status, alice.phone) == (Status.INVITED, None)
    assert [m.to for m in mail.outbox] == [[alice.email]]
    listing = browser.get(response["Location"]).content.decode()
    assert "Alice Active was reset; a new activation email is on its way." in listing


def test_remove_from_blink_asks_first_and_leaves_one_audit_event(login, owner, alice):
    browser = login(owner)
    assert "Their directory account is not changed." in browser.get(
        f"/users/{alice.pk}/remove").content.decode()
    response = browser.post(f"/users/{alice.pk}/remove")
    assert not BlinkUser.objects.filter(pk=alice.pk).exists()
    assert "Alice Active was removed from Blink." in browser.get(
        response["Location"]).content.decode()
    event = AuditEvent.objects.get(action="blink_user.remove")
    assert (event.target_label, event.actor_label) == (alice.username, owner.username)


# Resend activation


def test_resend_goes_only_to_users_still_activating(
    login, owner, alice, make_user, rival_user, django_capture_on_commit_callbacks
):
    invited = make_user("Ivy Invited")
    verifying = make_user("Vic Verifying", status=Status.VERIFYING_PHONE)
    needs = make_user("Nina Needs", status=Status.NEEDS_EMAIL, email="")
    left = make_user("Leo Left", status=Status.LEFT_DIRECTORY)
    browser = login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post("/users/resend", {"ids": [
            u.pk for u in [alice, invited, verifying, needs, left, rival_user]] + ["x", ""]})
    assert response.status_code == 302
    assert sorted(m.to[0] for m in mail.outbox) == sorted([invited.email, verifying.email])
    assert AuditEvent.objects.filter(action="blink_user.reinvite").count() == 2
    page = browser.get(response["Location"]).content.decode()
    assert "Activation resent to 2 users." in page
    assert "3 ticked users were left alone" in page
    rival_user.refresh_from_db()
    assert rival_user.activation_email_status == ""


def test_resend_comes_back_to_the_same_filtered_page(login, owner, make_user):
    make_user("Ivy Invited")
    browser = login(owner)
    page = browser.get("/users/", {"status": "invited", "page": "1"}).content.decode()
    bulk = page.split('id="bulk-form"', 1)[1].split("</form>", 1)[0]
    assert '<input type="hidden" name="status" value="invited">' in bulk
    response = browser.post("/users/resend", {"ids": ["999999"], "status": "invited"})
    assert response["Location"] == "/users/?status=invited"


def test_an_archived_clients_users_get_no_activation_emails(
    login, owner, acme_client, make_user, django_capture_on_commit_callbacks
):
    invited = make_user("Ivy Invited")
    Client.objects.filter(pk=acme_client.pk).update(archived_at=timezone.now())
    browser = login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        resent = browser.post("/users/resend", {"ids": [invited.pk]}, follow=True)
        reset = browser.post(f"/users/{invited.pk}/reset", follow=True)
    assert "1 ticked user was left alone" in resent.content.decode()
    assert "This client is archived" in reset.content.decode()
    assert mail.outbox == []
    invited.refresh_from_db()
    assert invited.status == Status.INVITED
    assert AuditEvent.objects.get(action="blink_user.reinvite").result == "refused"


@pytest.mark.parametrize("name", ["reader", "outsider"])
def test_resend_needs_a_writer_of_the_company(request, login, name, make_user):
    invited = make_user("Ivy Invited")
    response = login(request.getfixturevalue(name)).post("/users/resend", {"ids": invited.pk})
    assert response.status_code == (403 if name == "reader" else 302)
    assert not AuditEvent.objects.filter(action="blink_user.reinvite").exists()
