from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from clients.models import Client, Company, Membership, Role
from directory.models import Connection, Entry


def test_seed_creates_a_usable_demo_once(db, rf):
    out = StringIO()
    call_command("seed_demo", stdout=out)
    password = re.search(r"password:\s+(\S+)", out.getvalue())
    assert password is not None
    assert authenticate(rf.post("/login/"), username="admin", password=password.group(1))
    membership = Membership.objects.get(user__username="admin")
    assert membership.role == Role.OWNER
    assert Client.objects.filter(company=membership.company).count() == 1
    connection = Connection.objects.get(client__company=membership.company)
    assert connection.kind == "demo" and connection.last_sync_status == "ok"
    assert Entry.objects.filter(connection=connection, kind="user").count() > 50

    again = StringIO()
    call_command("seed_demo", stdout=again)
    assert "already present" in again.getvalue()
    assert "password" not in again.getvalue()
    assert Company.objects.count() == 1
    assert Client.objects.count() == 1


def test_create_company_makes_an_owner_who_can_sign_in(db, monkeypatch, rf):
    answers = iter(["a long enough passphrase", "a long enough passphrase"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    out = StringIO()
    call_command("create_company", "--name", "Northwind IT", "--site-url",
                 "https://blink.northwind.example", "--owner", "nina", stdout=out)
    assert "Sign in at https://blink.northwind.example/login/" in out.getvalue()
    membership = Membership.objects.get(user__username="nina")
    assert (membership.company.name, membership.role) == ("Northwind IT", Role.OWNER)
    assert authenticate(rf.post("/login/"), username="nina", password="a long enough passphrase")


def test_create_company_refuses_a_weak_password(db, monkeypatch):
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "short")
    with pytest.raises(CommandError, match="too short"):
        call_command("create_company", "--name", "X", "--site-url", "https://x.example",
                     "--owner", "x")
    assert not Company.objects.exists()
