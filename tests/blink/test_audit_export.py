"""The audit log's user filter and its CSV export: the filtered events, every member of the
company may download them, nobody sees another company's, and no cell runs as a formula."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

from django.test import Client as HttpClient
from django.utils import timezone

from blink.audit import Actor, audit_record
from blink.models import AuditEvent
from clients.models import Client, Company

HEADER = ["When (UTC)", "Who", "Action", "Target", "Client", "Result", "From", "Details"]


def rows(response: Any) -> list[list[str]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="blink-audit-')
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


def test_every_member_exports_their_own_companys_trail_only(
    persona: tuple[str, HttpClient], acme_client: Client, rival_client: Client
) -> None:
    name, browser = persona

    exported = rows(browser.get("/audit/export.csv"))

    assert exported[0] == HEADER
    clients = {row[4] for row in exported[1:]} - {""}
    assert clients == ({"Initech"} if name == "outsider" else {"Globex"})
    other = "Globex" if name == "outsider" else "Initech"
    assert other not in str(exported)


def test_the_export_has_the_filtered_events_with_every_column(
    login: Any, owner: Any, company: Company, acme_client: Client
) -> None:
    actor = Actor(label="adam", ip="10.0.0.7")
    audit_record(company=company, client=acme_client, actor=actor, action="reset.request",
                 target="jdoe", detail={"channel": "sms", "request": 7})
    audit_record(company=company, client=acme_client, actor=actor, action="reset.request",
                 target="mkhan", detail={"channel": "console"})
    audit_record(company=company, client=acme_client, actor=actor, action="unlock.request",
                 target="jdoe", result=AuditEvent.Result.REFUSED, detail={"reason": "wrong PIN"})
    old = audit_record(company=company, actor=actor, action="reset.request", target="jdoe")
    AuditEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=5))

    exported = rows(login(owner).get("/audit/export.csv", {
        "user": "JDO", "action": "reset.request", "client": acme_client.pk,
        "since": timezone.now().date().isoformat(),
    }))

    [row] = exported[1:]
    event = AuditEvent.objects.get(target_label="jdoe", action="reset.request",
                                   client=acme_client)
    assert row == [event.created_at.strftime("%Y-%m-%d %H:%M:%S"), "adam", "reset.request",
                   "jdoe", "Globex", "Succeeded", "10.0.0.7",
                   '{"channel": "sms", "request": 7}']
    assert json.loads(row[7]) == {"channel": "sms", "request": 7}
    refused = rows(login(owner).get("/audit/export.csv", {"user": "jdoe",
                                                           "action": "unlock.request"}))
    assert refused[1][5] == "Refused"


def test_the_user_filter_narrows_the_page_too(login: Any, owner: Any, company: Company) -> None:
    actor = Actor(label="adam")
    audit_record(company=company, actor=actor, action="reset.request", target="jdoe")
    audit_record(company=company, actor=actor, action="reset.request", target="mkhan")

    page = login(owner).get("/audit/", {"user": "jdoe"}).content.decode()

    assert "<td>jdoe</td>" in page and "<td>mkhan</td>" not in page
    assert 'href="/audit/export.csv?user=jdoe"' in page


def test_cells_that_a_spreadsheet_would_run_are_quoted(
    login: Any, owner: Any, company: Company
) -> None:
    for target in ("=HYPERLINK(\"http://evil.example\")", "+1+1", "-2", "@SUM(A1)",
                   "\tcmd", "plain"):
        audit_record(company=company, actor=Actor(label="=cmd|' /C calc'!A0"),
                     action="blink_user.update", target=target)

    exported = rows(login(owner).get("/audit/export.csv", {"action": "blink_user.update"}))

    targets = sorted(row[3] for row in exported[1:])
    assert targets == sorted(["'=HYPERLINK(\"http://evil.example\")", "'+1+1", "'-2",
                              "'@SUM(A1)", "'\tcmd", "plain"])
    assert {row[1] for row in exported[1:]} == {"'=cmd|' /C calc'!A0"}


def test_another_companys_client_cannot_be_exported(
    login: Any, owner: Any, acme_client: Client, rival_client: Client
) -> None:
    response = login(owner).get("/audit/export.csv", {"client": rival_client.pk})

    assert response.status_code == 400
    assert b"Select a valid choice" in response.content
    assert b"Initech" not in response.content


def test_signed_out_visitors_are_sent_to_sign_in(client: HttpClient) -> None:
    response = client.get("/audit/export.csv")
    assert response.status_code == 302 and "/login/" in response["Location"]
