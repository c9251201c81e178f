"""Blink User Setup: browse a client's directory snapshot, tick users, OUs or groups, add them."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from blink.audit import SYSTEM
from blink.models import AuditEvent, BlinkUser
from clients.services import client_archive, client_create
from directory.base import DirectoryUser, Group, OrgUnit, Snapshot
from directory.models import Connection, Entry
from directory.services import connection_save, snapshot_apply

BASE = "DC=globex,DC=example"


def _ou(name: str, parent: str = BASE) -> OrgUnit:
    return OrgUnit(f"ou-{name.lower()}", name, f"OU={name},{parent}", parent)


def _user(key: str, name: str, ou: OrgUnit | None, **extra: object) -> DirectoryUser:
    parent = ou.dn if ou else BASE
    fields: dict = {"email": f"{key}@globex.example", **extra}
    return DirectoryUser(object_id=f"id-{key}", username=key, display_name=name,
                         upn=f"{key}@globex.example", dn=f"CN={name},{parent}",
                         parent_dn=parent, **fields)


def globex_snapshot() -> Snapshot:
    corp = _ou("Corp")
    sales = _ou("Sales", corp.dn)
    emea = _ou("EMEA", sales.dn)
    it = _ou("IT", corp.dn)
    users = [
        _user("sseller", "Sam Seller", sales),
        _user("sue", "Sue Summers", sales, password_never_expires=True),
        _user("sid", "Sid Noemail", sales, email=""),
        _user("elena", "Elena Euro", emea),
        _user("emil", "Emil Euro", emea),
        _user("ida", "Ida Admin", it, protected=True),
        _user("dan", "Dan Disabled", it, enabled=False),
        _user("ivan", "Ivan Tech", it),
        _user("rob", "Rob Rootless", None),
    ]
    everyone = Group("g-everyone", "Everyone", f"CN=Everyone,{corp.dn}", corp.dn,
                     member_ids=frozenset(u.object_id for u in users))
    admins = Group("g-admins", "Domain Admins", f"CN=Domain Admins,{corp.dn}", corp.dn,
                   member_ids=frozenset({"id-ida"}))
    return Snapshot(org_units=[corp, sales, emea, it], groups=[everyone, admins], users=users)


def sized_snapshot(ous: int, per_ou: int) -> Snapshot:
    """``ous`` OUs under one root, nested two deep, each holding ``per_ou`` users."""
    root = _ou("Root")
    units = [root]
    users = []
    for n in range(ous):
        parent = units[max(0, n // 3)]
        unit = OrgUnit(f"ou-{n}", f"Unit {n}", f"OU=Unit {n},{parent.dn}", parent.dn)
        units.append(unit)
        users += [_user(f"u{n}x{m}", f"User {n}-{m}", unit) for m in range(per_ou)]
    groups = [Group(f"g{g}", f"Group {g}", f"CN=Group {g},{BASE}", BASE,
                    member_ids=frozenset(u.object_id for u in users[g::3])) for g in range(3)]
    return Snapshot(org_units=units, groups=groups, users=users)


@pytest.fixture
def directory(acme_client) -> Connection:
    connection = connection_save(client=acme_client, actor=SYSTEM, kind="demo",
                                 parameters={}, secrets={})
    snapshot_apply(connection=connection, snapshot=globex_snapshot())
    return connection


@pytest.fixture
def rival_directory(rival_client) -> Connection:
    connection = connection_save(client=rival_client, actor=SYSTEM, kind="demo",
                                 parameters={}, secrets={})
    snapshot_apply(connection=connection, snapshot=Snapshot(
        org_units=[_ou("Rivals")],
        groups=[],
        users=[_user("rival", "Rita Rival", _ou("Rivals"))],
    ))
    return connection


def entry(name: str, kind: str = "ou") -> Entry:
    return Entry.objects.get(name=name, kind=kind)


def node(browser, client, key: str, **params: object) -> str:
    response = browser.get(f"/setup/{client.pk}/node", {"node": key, **params})
    assert response.status_code == 200
    return response.content.decode()


def ticked(page: str) -> set[str]:
    """The user ids a page offers to tick."""
    return set(re.findall(r'name="user" value="([^"]+)"', page))


# Viewing


def test_setup_page_per_persona(persona, directory, acme_client):
    name, browser = persona
    response = browser.get("/setup/", {"client": acme_client.pk})
    if name == "outsider":
        assert response.status_code == 404
        return
    assert response.status_code == 200
    page = response.content.decode()
    assert "Globex" in page and "Corp" in page and "Sales" in page
    assert ("Blink Users</button>" in page) == (name != "reader")
    assert ('class="tick"' in page) == (name != "reader")


def test_outsider_sees_only_their_own_company(login, outsider, directory, acme_client):
    page = login(outsider).get("/setup/").content.decode()
    assert "Globex" not in page
    assert "No client has a directory connected yet" in page


def test_first_paint_shows_the_ou_tree_with_counts_but_not_the_users(login, owner, directory):
    page = login(owner).get("/setup/").content.decode()
    for ou, count in [("Corp", 8), ("Sales", 5), ("EMEA", 2), ("IT", 3)]:
        assert re.search(rf">{ou}</span> <span class=\"count\">{count} users<", page), ou
    assert "Users not in an OU" in page
    assert "Sam Seller" not in page and "Ivan Tech" not in page
    assert "9 users in Globex's directory, 4 OUs" in page


def test_select_client_lists_active_clients_with_a_directory(login, owner, directory,
                                                             company):
    client_create(company=company, actor=SYSTEM, name="No Directory Yet")
    archived = client_create(company=company, actor=SYSTEM, name="Gone Corp")
    connection_save(client=archived, actor=SYSTEM, kind="demo", parameters={}, secrets={})
    client_archive(client=archived, actor=SYSTEM)
    page = login(owner).get("/setup/").content.decode()
    options = re.findall(r"<option value=\"\d+\"[^>]*>([^<]+)</option>", page)
    assert options == ["Globex"]


def test_a_client_without_a_directory_says_how_to_connect_one(login, owner, company, directory):
    bare = client_create(company=company, actor=SYSTEM, name="Bare")
    page = login(owner).get("/setup/", {"client": bare.pk}).content.decode()
    assert "Bare has no directory connected" in page


def test_opening_an_ou_lists_its_users_and_what_they_can_be(login, owner, directory,
                                                            acme_client):
    browser = login(owner)
    BlinkUser.objects.create(client=acme_client, connection=directory, object_id="id-ivan",
                             username="ivan", display_name="Ivan Tech",
                             status=BlinkUser.Status.ACTIVE)
    page = node(browser, acme_client, f"ou-{entry('IT').pk}")
    assert "Ida Admin" in page and "Dan Disabled" in page and "Ivan Tech" in page
    assert "Protected: a privileged account" in page
    assert "Disabled in the directory" in page
    assert "Blink user · Active" in page
    # Nobody in IT can be ticked: protected, disabled, already a Blink user.
    assert ticked(page) == set()
    sales = node(browser, acme_client, f"ou-{entry('Sales').pk}")
    assert ticked(sales) == {"id-sseller", "id-sue", "id-sid"}
    assert "No email: will need one" in sales
    assert "Elena Euro" not in sales  # in EMEA, one level down
    # Sue can have Blink (unlock, lockout notices), but her resets would be refused.
    sue = next(row for row in sales.split("<li") if "Sue Summers" in row)
    assert "Password never expires: Blink can unlock it, not reset it" in sue
    assert sales.count("Password never expires") == 1


def test_users_outside_any_ou_and_group_members_open_too(login, owner, directory, acme_client):
    browser = login(owner)
    assert ticked(node(browser, acme_client, f"root-{directory.pk}")) == {"id-rob"}
    admins = node(browser, acme_client, f"group-{entry('Domain Admins', 'group').pk}")
    assert "Ida Admin" in admins and ticked(admins) == set()


def test_groups_view_lists_groups_with_member_counts(login, owner, directory):
    page = login(owner).get("/setup/", {"view": "groups"}).content.decode()
    assert re.search(r">Everyone</span> <span class=\"count\">9 users<", page)
    assert re.search(r">Domain Admins</span> <span class=\"count\">1 user<", page)
    assert 'name="group"' in page and 'name="ou"' not in page
    assert 'aria-current="page">Domain Groups' in page


def test_a_large_node_comes_in_pages(login, owner, acme_client, monkeypatch):
    monkeypatch.setattr("blink.tree.NODE_PAGE", 4)
    connection = connection_save(client=acme_client, actor=SYSTEM, kind="demo",
                                 parameters={}, secrets={})
    snapshot_apply(connection=connection, snapshot=sized_snapshot(1, 10))
    browser = login(owner)
    key = f"ou-{entry('Unit 0').pk}"
    first = node(browser, acme_client, key)
    assert len(ticked(first)) == 4
    assert 'data-offset="4">Show 6 more' in first
    second = node(browser, acme_client, key, offset=4)
    assert len(ticked(second)) == 4 and not ticked(first) & ticked(second)
    last = node(browser, acme_client, key, offset=8)
    assert len(ticked(last)) == 2 and "more" not in last
    expand = browser.get(f"/setup/{acme_client.pk}/expand").content.decode()
    assert len(ticked(expand)) == 4 and "Show 6 more" in expand


def test_nodes_of_another_client_are_not_found(login, owner, outsider, directory,
                                               rival_directory, acme_client, rival_client):
    rival_ou = entry("Rivals")
    browser = login(owner)
    assert browser.get(f"/setup/{acme_client.pk}/node",
                       {"node": f"ou-{rival_ou.pk}"}).status_code == 404
    assert browser.get(f"/setup/{rival_client.pk}/node",
                       {"node": f"ou-{rival_ou.pk}"}).status_code == 404
    assert browser.get(f"/setup/{acme_client.pk}/node",
                       {"node": f"root-{rival_directory.pk}"}).status_code == 404
    corp = entry("Corp")
    for path in ["node", "expand", "search"]:
        response = login(outsider).get(f"/setup/{acme_client.pk}/{path}",
                                       {"node": f"ou-{corp.pk}", "q": "Sam"})
        assert response.status_code == 404, path


@pytest.mark.parametrize("key", ["", "ou", "ou-", "ou-x", "user-1", "ou-1-2", "ou-99999999",
                                 "ou-" + "9" * 40, "ou-\x00"])
def test_bad_node_keys_are_not_found(login, owner, directory, acme_client, key):
    response = login(owner).get(f"/setup/{acme_client.pk}/node", {"node": key})
    assert response.status_code == 404


def test_search_finds_users_by_name_username_or_email(login, owner, directory, acme_client):
    browser = login(owner)

    def found(query: str) -> set[str]:
        response = browser.get(f"/setup/{acme_client.pk}/search", {"q": query})
        assert response.status_code == 200
        return set(re.findall(r'<span class="name">([^<]+)</span>', response.content.decode()))

    assert found("summers") == {"Sue Summers"}
    assert found("SSELL") == {"Sam Seller"}
    assert found("elena@globex") == {"Elena Euro"}
    assert found("Euro") == {"Elena Euro", "Emil Euro"}
    assert found("nobody-like-this") == set()
    assert found("a") == set()  # too short to mean anything
    page = browser.get("/setup/", {"q": "Euro"}).content.decode()
    assert "Elena Euro" in page and 'id="tree" class="tree" hidden' in page


def test_expand_all_fetches_every_node_in_one_request(login, owner, directory, acme_client):
    browser = login(owner)
    page = browser.get(f"/setup/{acme_client.pk}/expand", {"view": "ou"}).content.decode()
    keys = set(re.findall(r'<ul data-users="([^"]+)">', page))
    assert keys == {f"ou-{entry(name).pk}" for name in ["Sales", "EMEA", "IT"]} | {
        f"root-{directory.pk}"}
    assert ticked(page) == {"id-sseller", "id-sue", "id-sid", "id-elena", "id-emil",
                            "id-ivan", "id-rob"}
    groups = browser.get(f"/setup/{acme_client.pk}/expand",
                         {"view": "groups"}).content.decode()
    assert set(re.findall(r'<ul data-users="([^"]+)">', groups)) == {
        f"group-{entry('Everyone', 'group').pk}", f"group-{entry('Domain Admins', 'group').pk}"}


# Adding Blink users


def result_of(browser, response) -> str:
    assert response.status_code == 302
    return browser.get(response["Location"]).content.decode()


def test_ticked_users_become_blink_users_and_get_an_email(
    login, owner, directory, acme_client, django_capture_on_commit_callbacks
):
    browser = login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(f"/setup/{acme_client.pk}/add",
                                {"user": ["id-sseller", "id-sue", "id-sid"]})
    page = result_of(browser, response)
    assert "<strong>2</strong> users invited" in page
    assert sorted(m.to[0] for m in mail.outbox) == ["sseller@globex.example",
                                                    "sue@globex.example"]
    sid = BlinkUser.objects.get(object_id="id-sid")
    assert sid.status == BlinkUser.Status.NEEDS_EMAIL
    assert "1 needs an email" in page
    assert f'href="/users/{sid.pk}/edit?client={acme_client.pk}"' in page
    assert AuditEvent.objects.filter(action="blink_user.invite").count() == 3
    # The result is shown once.
    assert "users invited" not in browser.get(response["Location"]).content.decode()
    # They now show as Blink users in the tree, not tickable.
    sales = node(browser, acme_client, f"ou-{entry('Sales').pk}")
    assert ticked(sales) == set() and sales.count("Blink user · ") == 3


def test_ticking_an_ou_adds_everyone_below_it_who_can_have_blink(
    login, owner, directory, acme_client, django_capture_on_commit_callbacks
):
    BlinkUser.objects.create(client=acme_client, connection=directory, object_id="id-sue",
                             username="sue", display_name="Sue Summers")
    browser = login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(f"/setup/{acme_client.pk}/add", {"ou": entry("Corp").pk})
    page = result_of(browser, response)
    added = set(BlinkUser.objects.values_list("username", flat=True))
    assert added == {"sue", "sseller", "sid", "elena", "emil", "ivan"}
    assert "<strong>4</strong> users invited" in page
    assert ("Left out of the ticked OUs and groups: 1 already Blink users, "
            "1 disabled in the directory, 1 privileged accounts (Blink refuses those).") in page
    assert len(mail.outbox) == 4


def test_ticking_a_group_or_the_users_outside_ous(login, owner, directory, acme_client):
    browser = login(owner)
    browser.post(f"/setup/{acme_client.pk}/add", {
        "group": entry("Domain Admins", "group").pk, "root": directory.pk})
    assert set(BlinkUser.objects.values_list("username", flat=True)) == {"rob"}


def test_users_ticked_one_by_one_are_refused_with_the_reason(login, owner, directory,
                                                             acme_client):
    browser = login(owner)
    response = browser.post(f"/setup/{acme_client.pk}/add", {"user": ["id-ida", "id-dan"]})
    page = result_of(browser, response)
    assert "Nobody was invited this time." in page
    assert "Ida Admin: a privileged account; Blink refuses those" in page
    assert "Dan Disabled: disabled in the directory" in page
    assert not BlinkUser.objects.exists()


def test_adding_per_persona(persona, directory, acme_client):
    name, browser = persona
    response = browser.post(f"/setup/{acme_client.pk}/add", {"user": ["id-sue"]})
    expected = {"owner": 302, "admin": 302, "reader": 403, "outsider": 404}[name]
    assert response.status_code == expected
    assert BlinkUser.objects.exists() == (expected == 302)


def test_ids_of_another_client_or_company_are_ignored(login, owner, directory, rival_directory,
                                                      acme_client, company):
    other = client_create(company=company, actor=SYSTEM, name="Sister Co")
    sister = connection_save(client=other, actor=SYSTEM, kind="demo", parameters={},
                             secrets={})
    snapshot_apply(connection=sister, snapshot=Snapshot(
        org_units=[_ou("Sisters")], groups=[],
        users=[_user("sis", "Sis Ter", _ou("Sisters"))]))
    browser = login(owner)
    browser.post(f"/setup/{acme_client.pk}/add", {
        "user": ["id-rival", "id-sis", "id-sue"],
        "ou": [entry("Rivals").pk, entry("Sisters").pk],
        "root": [rival_directory.pk, sister.pk],
    })
    assert list(BlinkUser.objects.values_list("username", "client")) == [("sue", acme_client.pk)]


def test_an_archived_client_gets_no_new_users(login, owner, directory, acme_client):
    client_archive(client=acme_client, actor=SYSTEM)
    browser = login(owner)
    response = browser.post(f"/setup/{acme_client.pk}/add", {"user": "id-sue"})
    assert "Globex is archived" in browser.get(response["Location"]).content.decode()
    assert not BlinkUser.objects.exists()


@pytest.mark.parametrize("data", [
    {},
    {"ou": "abc"},
    {"ou": ["1x", "-3", "9" * 40]},
    {"user": "\x00"},
    {"user": "x" * 10_000},
    {"group": "", "root": "null"},
])
def test_nonsense_ticks_add_nobody(login, owner, directory, acme_client, data):
    browser = login(owner)
    response = browser.post(f"/setup/{acme_client.pk}/add", data)
    assert response.status_code == 302
    page = browser.get(response["Location"]).content.decode()
    assert "Tick at least one user, OU or group" in page or "Nobody was invited" in page
    assert not BlinkUser.objects.exists()


# Staying fast on big directories


def query_counts(browser, client, view: str) -> dict[str, int]:
    counts = {}
    first = Entry.objects.filter(connection__client=client,
                                 kind="group" if view == "groups" else "ou").last()
    assert first is not None
    key = f"{'group' if view == 'groups' else 'ou'}-{first.pk}"
    requests = {
        "first paint": ("/setup/", {"client": client.pk, "view": view}),
        "node": (f"/setup/{client.pk}/node", {"node": key}),
        "expand": (f"/setup/{client.pk}/expand", {"view": view}),
        "search": (f"/setup/{client.pk}/search", {"q": "User 1"}),
    }
    for name, (path, params) in requests.items():
        with CaptureQueriesContext(db) as context:
            response = browser.get(path, params)
        assert response.status_code == 200
        counts[name] = len(context.captured_queries)
    return counts


@pytest.mark.parametrize("view", ["ou", "groups"])
def test_queries_do_not_grow_with_the_directory(login, owner, acme_client, view):
    connection = connection_save(client=acme_client, actor=SYSTEM, kind="demo",
                                 parameters={}, secrets={})
    browser = login(owner)
    snapshot_apply(connection=connection, snapshot=sized_snapshot(3, 2))
    small = query_counts(browser, acme_client, view)
    snapshot_apply(connection=connection, snapshot=sized_snapshot(60, 12))
    # Some of the users are Blink users, which the tree shows.
    for object_id in Entry.objects.filter(kind="user").values_list("object_id", flat=True)[::5]:
        BlinkUser.objects.create(client=acme_client, connection=connection,
                                 object_id=object_id, username=object_id)
    large = query_counts(browser, acme_client, view)
    assert small == large
    assert max(large.values()) <= 10


def test_directory_text_is_shown_as_text(login, owner, acme_client):
    connection = connection_save(client=acme_client, actor=SYSTEM, kind="demo",
                                 parameters={}, secrets={})
    evil = _ou('<b>OU</b> "x"')
    snapshot_apply(connection=connection, snapshot=Snapshot(org_units=[evil], groups=[], users=[
        _user('"><script>alert(1)</script>', "<img src=x onerror=alert(1)>", evil,
              email="a&b@<i>x</i>.example")]))
    browser = login(owner)
    pages = [
        browser.get("/setup/").content.decode(),
        node(browser, acme_client, f"ou-{Entry.objects.get(kind='ou').pk}"),
        browser.get(f"/setup/{acme_client.pk}/expand").content.decode(),
        browser.get(f"/setup/{acme_client.pk}/search", {"q": "img"}).content.decode(),
    ]
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page and "<b>OU" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages[1]
    assert 'value="id-&quot;&gt;&lt;script&gt;' in pages[1]
    assert "a&amp;b@&lt;i&gt;x&lt;/i&gt;.example" in pages[3]
