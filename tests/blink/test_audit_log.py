from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from blink.audit import Actor, audit_record
from blink.models import AuditEvent
from clients.services import client_archive


def test_every_member_reads_their_own_companys_trail(persona, acme_client, rival_client):
    name, browser = persona
    response = browser.get("/audit/")
    assert response.status_code == 200
    if name == "outsider":
        assert b"Initech" in response.content
        assert b"Globex" not in response.content
    else:
        assert b"Globex" in response.content
        assert b"Initech" not in response.content


def test_filters_narrow_the_trail(login, owner, company, acme_client):
    browser = login(owner)
    other = Actor(label="adam", ip="10.0.0.7")
    client_archive(client=acme_client, actor=other)
    old = audit_record(company=company, actor=other, action="client.update", target="Old")
    AuditEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))

    archived = browser.get("/audit/", {"action": "client.archive"}).content.decode()
    assert "client.archive</code>" in archived
    assert "client.create</code>" not in archived
    assert "10.0.0.7" in archived

    by_adam = browser.get("/audit/", {"actor": "ada"}).content.decode()
    assert "client.archive</code>" in by_adam
    assert "client.create</code>" not in by_adam

    today = timezone.now().date().isoformat()
    recent = browser.get("/audit/", {"since": today}).content.decode()
    assert ">Old<" not in recent
    old_only = browser.get(
        "/audit/", {"until": (timezone.now() - timedelta(days=9)).date().isoformat()}
    ).content.decode()
    assert ">Old<" in old_only
    assert "client.archive</code>" not in old_only


def test_another_companys_client_is_not_a_valid_filter(login, owner, rival_client):
    response = login(owner).get("/audit/", {"client": rival_client.pk})
    assert response.status_code == 200
    assert b"Select a valid choice" in response.content
    assert b"Initech" not in response.content.split(b"<table")[1]


def test_malformed_filters_do_not_break_the_page(login, owner, acme_client):
    response = login(owner).get("/audit/", {"since": "yesterday", "client": "x", "page": "zz"})
    assert response.status_code == 200
    assert b"Enter a valid date" in response.content


def test_trail_pages_with_a_constant_number_of_queries(login, owner, company, acme_client):
    browser = login(owner)
    actor = Actor(label="seed")

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert browser.get("/audit/").status_code == 200
        return len(ctx.captured_queries)

    audit_record(company=company, actor=actor, action="x", client=acme_client)
    few = queries()
    for n in range(60):
        audit_record(company=company, actor=actor, action=f"x{n % 5}", client=acme_client)
    assert queries() == few
    page_two = browser.get("/audit/", {"page": 2}).content.decode()
    assert "Page 2 of 2" in page_two
