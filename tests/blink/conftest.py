"""Fixtures of the activation tests: a demo directory and a user invited from it."""

from __future__ import annotations

from typing import Any

import pytest

from blink.audit import SYSTEM
from blink.invitations import blink_user_invite
from blink.models import BlinkUser
from clients.models import Client
from directory.models import Connection, Entry


@pytest.fixture
def directory(acme_client: Client, demo_connection: Connection) -> Connection:
    return demo_connection


def invite(client: Client, directory: Connection, django_capture_on_commit_callbacks: Any,
           index: int = 0) -> BlinkUser:
    """Invite the ``index``-th demo user with an email address, its email sent."""
    entry = (Entry.objects.filter(connection=directory, kind="user", protected=False,
                                  enabled=True).exclude(email="").order_by("username")[index])
    with django_capture_on_commit_callbacks(execute=True):
        blink_user_invite(client=client, actor=SYSTEM, object_ids=[entry.object_id])
    return BlinkUser.objects.get(object_id=entry.object_id)


@pytest.fixture
def invited(acme_client: Client, directory: Connection,
            django_capture_on_commit_callbacks: Any) -> BlinkUser:
    return invite(acme_client, directory, django_capture_on_commit_callbacks)
