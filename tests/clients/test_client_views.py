"""Client pages: the list, add, edit, archive and restore, for each kind of member."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client as HttpClient

from blink.audit import SYSTEM
from blink.models import AuditEvent, BlinkUser
from clients.models import Client, Company
from clients.services import client_archive, client_create
from directory.services import connection_save

NEW_CLIENT = {"name": "Umbrella Corp", "temp_password_length": "16", "unlock_on_reset": "on"}


def _page_text(response: Any) -> str:
    return html.unescape(response.content.decode())


def _fresh(client: Client) -> Client:
    return Client.objects.get(pk=client.pk)


def _state(client: Client) -> tuple[str, int, bool, bool]:
    fresh = _fresh(client)
    return (fresh.name, fresh.temp_password_length, fresh.unlock_on_reset, fresh.is_archived())


# Who may do what


def test_every_member_lists_their_own_companys_clients(
    persona: tuple[str, HttpClient], acme_client: Client, rival_client: Client
) -> None:
    name, browser = persona
    response = browser.get("/clients/")
    assert response.status_code == 200
    page = _page_text(response)
    if name == "outsider":
        assert "Initech" in page
        assert "Rival MSP" in page
        assert "Globex" not in page
        assert "Acme IT" not in page
    else:
        assert "Globex" in page
        assert "Acme IT" in page
        assert "Initech" not in page
        assert "Rival MSP" not in page


def test_every_member_lists_their_own_archived_clients(
    persona: tuple[str, HttpClient], acme_client: Client, rival_client: Client
) -> None:
    client_archive(client=acme_client, actor=SYSTEM)
    client_archive(client=rival_client, actor=SYSTEM)
    name, browser = persona

    page = _page_text(browser.get("/clients/", {"archived": "1"}))

    assert ("Initech" in page) is (name == "outsider")
    assert ("Globex" in page) is (name != "outsider")


def test_only_members_who_can_write_see_edit_controls(
    login: Callable[..., HttpClient], owner: User, reader: User, acme_client: Client
) -> None:
    edit_link = f'href="/clients/{acme_client.pk}/"'
    archive_form = f'action="/clients/{acme_client.pk}/archive"'

    as_owner = login(owner).get("/clients/").content.decode()
    as_reader = login(reader).get("/clients/").content.decode()

    assert "Globex" in as_owner
    assert "Globex" in as_reader
    for control in ("Add client", edit_link, archive_form):
        assert control in as_owner
        assert control not in as_reader


def test_each_member_opens_the_add_form_only_if_they_can_write(
    persona: tuple[str, HttpClient], company: Company
) -> None:
    name, browser = persona
    response = browser.get("/clients/add/")
    if name == "reader":
        assert response.status_code == 403
        assert "Your role is read-only." in _page_text(response)
    else:
        assert response.status_code == 200
        assert "Add client" in _page_text(response)


def test_each_member_adds_a_client_to_their_own_company_only(
    persona: tuple[str, HttpClient], company: Company, other_company: Company
) -> None:
    name, browser = persona

    response = browser.post("/clients/add/", NEW_CLIENT)

    added = Client.objects.filter(name="Umbrella Corp")
    if name == "reader":
        assert response.status_code == 403
        assert not added.exists()
    else:
        assert response.status_code == 302
        assert response["Location"] == "/clients/"
        owner_company = other_company if name == "outsider" else company
        assert list(added.values_list("company", flat=True)) == [owner_company.pk]


def test_each_member_opens_the_edit_form_only_as_their_role_allows(
    persona: tuple[str, HttpClient], acme_client: Client
) -> None:
    name, browser = persona
    response = browser.get(f"/clients/{acme_client.pk}/")
    expected = {"owner": 200, "admin": 200, "reader": 403, "outsider": 404}[name]
    assert response.status_code == expected
    if expected == 200:
        assert 'value="Globex"' in response.content.decode()
    else:
        assert "Globex" not in _page_text(response)


def test_each_member_edits_a_client_only_as_their_role_allows(
    persona: tuple[str, HttpClient], acme_client: Client
) -> None:
    name, browser = persona
    before = _state(acme_client)

    response = browser.post(
        f"/clients/{acme_client.pk}/", {"name": "Globex Intl", "temp_password_length": "20"}
    )

    expected = {"owner": 302, "admin": 302, "reader": 403, "outsider": 404}[name]
    assert response.status_code == expected
    if expected == 302:
        assert _state(acme_client) == ("Globex Intl", 20, False, False)
    else:
        assert _state(acme_client) == before


def test_each_member_archives_a_client_only_as_their_role_allows(
    persona: tuple[str, HttpClient], acme_client: Client
) -> None:
    name, browser = persona

    response = browser.post(f"/clients/{acme_client.pk}/archive")

    expected = {"owner": 302, "admin": 302, "reader": 403, "outsider": 404}[name]
    assert response.status_code == expected
    assert _fresh(acme_client).is_archived() is (expected == 302)


def test_each_member_restores_a_client_only_as_their_role_allows(
    persona: tuple[str, HttpClient], acme_client: Client
) -> None:
    client_archive(client=acme_client, actor=SYSTEM)
    name, browser = persona

    response = browser.post(f"/clients/{acme_client.pk}/restore")

    expected = {"owner": 302, "admin": 302, "reader": 403, "outsider": 404}[name]
    assert response.status_code == expected
    assert _fresh(acme_client).is_archived() is (expected != 302)


def test_outsider_does_not_learn_whether_a_client_exists(
    login: Callable[..., HttpClient], outsider: User, acme_client: Client
) -> None:
    browser = login(outsider)
    missing = acme_client.pk + 1000
    for path in (f"/clients/{acme_client.pk}/", f"/clients/{missing}/"):
        assert browser.get(path).status_code == 404
    for action in ("archive", "restore"):
        assert browser.post(f"/clients/{acme_client.pk}/{action}").status_code == 404
        assert browser.post(f"/clients/{missing}/{action}").status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/clients/"),
        ("get", "/clients/?archived=1"),
        ("get", "/clients/add/"),
        ("post", "/clients/add/"),
        ("get", "/clients/{pk}/"),
        ("post", "/clients/{pk}/"),
        ("post", "/clients/{pk}/archive"),
        ("post", "/clients/{pk}/restore"),
    ],
)
def test_anonymous_visitor_is_sent_to_sign_in(
    client: HttpClient, acme_client: Client, method: str, path: str
) -> None:
    before = _state(acme_client)
    url = path.format(pk=acme_client.pk)

    response = getattr(client, method)(url, NEW_CLIENT if method == "post" else None)

    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/clients/")
    assert _state(acme_client) == before
    assert not Client.objects.filter(name="Umbrella Corp").exists()


@pytest.mark.parametrize("action", ["archive", "restore"])
def test_archive_and_restore_refuse_get(
    login: Callable[..., HttpClient], owner: User, acme_client: Client, action: str
) -> None:
    response = login(owner).get(f"/clients/{acme_client.pk}/{action}")
    assert response.status_code == 405
    assert not _fresh(acme_client).is_archived()


# The list


def test_list_shows_active_clients_and_archived_tab_shows_archived(
    login: Callable[..., HttpClient], owner: User, company: Company, acme_client: Client
) -> None:
    hooli = client_create(company=company, actor=SYSTEM, name="Hooli")
    client_archive(client=hooli, actor=SYSTEM)
    browser = login(owner)

    active = _page_text(browser.get("/clients/"))
    archived = _page_text(browser.get("/clients/", {"archived": "1"}))

    assert "Globex" in active
    assert "Hooli" not in active
    assert "Hooli" in archived
    assert "Globex" not in archived


def test_empty_lists_say_so(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    browser = login(owner)
    assert "No clients yet. Add the first one" in _page_text(browser.get("/clients/"))
    assert "No archived clients." in _page_text(browser.get("/clients/", {"archived": "1"}))


# Add and edit


def test_add_form_starts_with_the_defaults(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    page = login(owner).get("/clients/add/").content.decode()
    assert 'name="temp_password_length" value="12"' in page
    assert 'name="unlock_on_reset" id="id_unlock_on_reset" checked' in page
    assert 'id="id_sms_reset_needs_pin"' in page
    assert 'id="id_sms_reset_needs_pin" checked' not in page


def test_add_a_client_with_the_defaults(
    login: Callable[..., HttpClient], owner: User, company: Company
) -> None:
    browser = login(owner)

    response = browser.post(
        "/clients/add/",
        {"name": "  Umbrella Corp  ", "temp_password_length": "12", "unlock_on_reset": "on"},
        follow=True,
    )

    page = _page_text(response)
    assert "Client “Umbrella Corp” added." in page
    added = Client.objects.get(company=company, name="Umbrella Corp")
    assert added.temp_password_length == 12
    assert added.unlock_on_reset is True
    assert not added.is_archived()
    assert "Umbrella Corp" in page  # on the list it was sent back to


def test_edit_a_client(
    login: Callable[..., HttpClient], owner: User, acme_client: Client
) -> None:
    browser = login(owner)

    response = browser.post(
        f"/clients/{acme_client.pk}/",
        {"name": "Globex Corporation", "temp_password_length": "24"},
        follow=True,
    )

    assert "Client “Globex Corporation” saved." in _page_text(response)
    assert _state(acme_client) == ("Globex Corporation", 24, False, False)
    row = _page_text(response).split("Globex Corporation", 1)[1]
    assert row.index("24") < row.index("No")


def test_edit_form_shows_current_values(
    login: Callable[..., HttpClient], owner: User, acme_client: Client
) -> None:
    Client.objects.filter(pk=acme_client.pk).update(temp_password_length=30, unlock_on_reset=False)

    page = login(owner).get(f"/clients/{acme_client.pk}/").content.decode()

    assert "Edit Globex" in page
    assert 'value="30"' in page
    assert 'id="id_unlock_on_reset" checked' not in page


def test_turning_on_the_pin_names_the_active_users_who_have_none(
    login: Callable[..., HttpClient], owner: User, acme_client: Client
) -> None:
    """The option is in the client form; turning it on says how many Active users it
    leaves unable to reset by SMS and what to do, and Blink Users marks them."""
    connection = connection_save(client=acme_client, actor=SYSTEM, kind="demo",
                                 parameters={}, secrets={})
    for n, (status, pin_hash) in enumerate([("active", ""), ("active", ""),
                                            ("active", "pbkdf2_sha256$x"), ("invited", "")]):
        BlinkUser.objects.create(client=acme_client, connection=connection,
                                 object_id=f"obj-{n}", username=f"user{n}",
                                 display_name=f"User {n}", status=status, pin_hash=pin_hash)
    browser = login(owner)
    assert "No PIN" not in _page_text(browser.get("/users/"))
    form = {"name": "Globex", "temp_password_length": "12", "unlock_on_reset": "on",
            "sms_reset_needs_pin": "on"}

    response = browser.post(f"/clients/{acme_client.pk}/", form, follow=True)

    page = _page_text(response)
    assert _fresh(acme_client).sms_reset_needs_pin
    assert "2 Active users have no PIN yet. Blink refuses their texted resets" in page
    assert "edit the client to email them all a link to choose it" in page
    row = page.split(">Globex</a>", 1)[1].split("</tr>", 1)[0]
    assert re.findall(r"<td>([^<]*)</td>", row) == ["12", "Yes", "Yes"]
    event = AuditEvent.objects.filter(action="client.update").latest("id")
    assert "sms_reset_needs_pin" in str(event.detail["changed"])
    users = _page_text(browser.get("/users/"))
    assert users.count(">No PIN</span>") == 2
    assert 'id="id_sms_reset_needs_pin" checked' in \
        browser.get(f"/clients/{acme_client.pk}/").content.decode()

    # Saved again with it still on: nothing new to say.
    again = _page_text(browser.post(f"/clients/{acme_client.pk}/", form, follow=True))
    assert "no PIN yet" not in again
    # Off: nobody is refused for want of a PIN.
    del form["sms_reset_needs_pin"]
    browser.post(f"/clients/{acme_client.pk}/", form)
    assert not _fresh(acme_client).sms_reset_needs_pin
    assert "No PIN" not in _page_text(browser.get("/users/"))


def test_archive_then_restore(
    login: Callable[..., HttpClient], owner: User, acme_client: Client
) -> None:
    browser = login(owner)

    archived = browser.post(f"/clients/{acme_client.pk}/archive", follow=True)
    assert "Client “Globex” archived. You can restore it any time." in _page_text(archived)
    assert _fresh(acme_client).is_archived()
    assert "Globex" in _page_text(browser.get("/clients/", {"archived": "1"}))

    restored = browser.post(f"/clients/{acme_client.pk}/restore", follow=True)
    assert "Client “Globex” restored." in _page_text(restored)
    assert not _fresh(acme_client).is_archived()
    assert "Globex" not in _page_text(browser.get("/clients/", {"archived": "1"}))


@pytest.mark.parametrize("name", ["Globex", "globex", "GLOBEX", "  Globex "])
def test_duplicate_name_in_the_same_company_is_refused(
    login: Callable[..., HttpClient], owner: User, company: Company, acme_client: Client,
    name: str,
) -> None:
    response = login(owner).post("/clients/add/", {**NEW_CLIENT, "name": name})

    assert response.status_code == 200
    assert "You already have a client with this name." in _page_text(response)
    assert Client.objects.filter(company=company).count() == 1


def test_duplicate_of_an_archived_client_is_refused(
    login: Callable[..., HttpClient], owner: User, company: Company, acme_client: Client
) -> None:
    client_archive(client=acme_client, actor=SYSTEM)
    response = login(owner).post("/clients/add/", {**NEW_CLIENT, "name": "globex"})
    assert "You already have a client with this name." in _page_text(response)
    assert Client.objects.filter(company=company).count() == 1


def test_renaming_onto_another_clients_name_is_refused(
    login: Callable[..., HttpClient], owner: User, company: Company, acme_client: Client
) -> None:
    hooli = client_create(company=company, actor=SYSTEM, name="Hooli")

    response = login(owner).post(
        f"/clients/{hooli.pk}/", {"name": "GLOBEX", "temp_password_length": "12"}
    )

    assert response.status_code == 200
    assert "You already have a client with this name." in _page_text(response)
    assert _fresh(hooli).name == "Hooli"


def test_a_client_keeps_its_own_name_on_edit(
    login: Callable[..., HttpClient], owner: User, acme_client: Client
) -> None:
    response = login(owner).post(
        f"/clients/{acme_client.pk}/", {"name": "GLOBEX", "temp_password_length": "12"}
    )
    assert response.status_code == 302
    assert _fresh(acme_client).name == "GLOBEX"


def test_same_name_in_another_company_is_allowed(
    login: Callable[..., HttpClient], outsider: User, other_company: Company, acme_client: Client
) -> None:
    response = login(outsider).post("/clients/add/", {**NEW_CLIENT, "name": "Globex"})

    assert response.status_code == 302
    assert Client.objects.filter(company=other_company, name="Globex").exists()
    assert Client.objects.filter(name__iexact="globex").count() == 2


@pytest.mark.parametrize(
    ("length", "message"),
    [
        ("7", "Ensure this value is greater than or equal to 8."),
        ("65", "Ensure this value is less than or equal to 64."),
        ("abc", "Enter a whole number."),
        ("", "This field is required."),
    ],
)
def test_bad_password_length_is_refused_with_a_message(
    login: Callable[..., HttpClient], owner: User, company: Company, acme_client: Client,
    length: str, message: str,
) -> None:
    browser = login(owner)
    before = _state(acme_client)

    added = browser.post("/clients/add/", {**NEW_CLIENT, "temp_password_length": length})
    edited = browser.post(
        f"/clients/{acme_client.pk}/", {"name": "Globex", "temp_password_length": length}
    )

    for response in (added, edited):
        assert response.status_code == 200
        assert message in _page_text(response)
    assert not Client.objects.filter(name="Umbrella Corp").exists()
    assert _state(acme_client) == before


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "This field is required."),
        ("name", "x" * 10240, "Ensure this value has at most 120 characters (it has 10240)."),
        ("name", "Umbrella\x00Corp", "Null characters are not allowed."),
        ("name", ["Umbrella", "Corp"], "Enter a single value for this field."),
    ],
    ids=["empty", "10kB", "nul", "twice"],
)
def test_bad_client_name_is_refused_with_a_message(
    login: Callable[..., HttpClient], owner: User, company: Company,
    field: str, value: str | list[str], message: str,
) -> None:
    response = login(owner).post("/clients/add/", {**NEW_CLIENT, field: value})

    assert response.status_code == 200
    assert message in _page_text(response)
    assert not Client.objects.filter(company=company).exists()


# The audit trail


def _new_events(since: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(pk__gt=since).order_by("pk"))


def _last_event_id() -> int:
    last = AuditEvent.objects.order_by("-pk").first()
    return last.pk if last else 0


def _only_new_event(since: int, company: Company) -> AuditEvent:
    """The single audit event written after ``since``; fails if there are none or several."""
    events = _new_events(since)
    assert len(events) == 1, [event.action for event in events]
    event = events[0]
    assert event.company_id == company.pk
    return event


def test_each_change_leaves_exactly_one_audit_event(
    login: Callable[..., HttpClient], admin: User, company: Company
) -> None:
    browser = login(admin)
    seen: list[AuditEvent] = []

    since = _last_event_id()
    assert browser.post("/clients/add/", NEW_CLIENT).status_code == 302
    client = Client.objects.get(company=company)
    seen.append(_only_new_event(since, company))

    since = _last_event_id()
    edit = {"name": "Umbrella", "temp_password_length": "10"}
    assert browser.post(f"/clients/{client.pk}/", edit).status_code == 302
    seen.append(_only_new_event(since, company))

    for action in ("archive", "restore"):
        since = _last_event_id()
        assert browser.post(f"/clients/{client.pk}/{action}").status_code == 302
        seen.append(_only_new_event(since, company))

    assert [event.action for event in seen] == [
        "client.create", "client.update", "client.archive", "client.restore",
    ]
    assert [event.target_label for event in seen] == [
        "Umbrella Corp", "Umbrella", "Umbrella", "Umbrella",
    ]
    for event in seen:
        assert event.client_id == client.pk
        assert event.actor == admin
        assert event.actor_label == "adam"
        assert event.ip_address == "127.0.0.1"


def test_update_event_lists_what_changed(
    login: Callable[..., HttpClient], owner: User, acme_client: Client
) -> None:
    since = _last_event_id()
    edit = {"name": "Globex", "temp_password_length": "20"}
    login(owner).post(f"/clients/{acme_client.pk}/", edit)

    event = _only_new_event(since, acme_client.company)
    assert event.action == "client.update"
    assert event.detail == {
        "changed": {"temp_password_length": [12, 20], "unlock_on_reset": [True, False]}
    }


def test_actions_that_change_nothing_leave_no_event(
    login: Callable[..., HttpClient], owner: User, acme_client: Client
) -> None:
    browser = login(owner)
    since = _last_event_id()

    browser.post(f"/clients/{acme_client.pk}/",
                 {"name": "Globex", "temp_password_length": "12", "unlock_on_reset": "on"})
    browser.post(f"/clients/{acme_client.pk}/restore")  # not archived: nothing to restore
    browser.post(f"/clients/{acme_client.pk}/archive")
    browser.post(f"/clients/{acme_client.pk}/archive")  # already archived

    assert [event.action for event in _new_events(since)] == ["client.archive"]


def test_refused_changes_leave_no_event(
    login: Callable[..., HttpClient], reader: User, outsider: User, acme_client: Client
) -> None:
    since = _last_event_id()

    login(reader).post(f"/clients/{acme_client.pk}/archive")
    login(outsider).post(f"/clients/{acme_client.pk}/archive")
    login(reader).post("/clients/add/", NEW_CLIENT)

    assert _new_events(since) == []
