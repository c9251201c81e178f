from __future__ import annotations

import re
from io import StringIO

from django.contrib.auth import authenticate
from django.core.management import call_command

from clients.models import Client, Company, Membership, Role


def test_seed_creates_a_usable_demo_once(db, rf):
    out = StringIO()
    call_command("seed_demo", stdout=out)
    password = re.search(r"password:\s+(\S+)", out.getvalue())
    assert password is not None
    assert authenticate(rf.post("/login/"), username="admin", password=password.group(1))
    membership = Membership.objects.get(user__username="admin")
    assert membership.role == Role.OWNER
    assert Client.objects.filter(company=membership.company).count() == 1

    again = StringIO()
    call_command("seed_demo", stdout=again)
    assert "already present" in again.getvalue()
    assert "password" not in again.getvalue()
    assert Company.objects.count() == 1
    assert Client.objects.count() == 1
