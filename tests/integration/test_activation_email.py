"""The activation email through Django's SMTP backend to a real SMTP server."""

from __future__ import annotations

import re

import pytest

from blink.audit import SYSTEM
from blink.invitations import blink_user_invite
from blink.models import BlinkUser
from clients.services import branding_update
from directory.demo import demo_directory_seed
from directory.models import Entry
from directory.services import connection_save, directory_sync

pytestmark = pytest.mark.integration


@pytest.fixture
def ticked(acme_client):
    connection = connection_save(client=acme_client, actor=SYSTEM, kind="demo", parameters={},
                                 secrets={})
    demo_directory_seed(connection)
    directory_sync(connection_id=connection.pk, claimed=True)
    return Entry.objects.filter(connection=connection, kind="user", protected=False,
                                enabled=True).exclude(email="").order_by("username")[0]


def test_the_activation_email_arrives_branded_with_a_working_link(
    smtp_server, company, acme_client, ticked, django_capture_on_commit_callbacks, client
):
    company.support_email = "help@acme-it.example"
    company.save()
    branding_update(company=company, actor=SYSTEM, primary_colour="#7c2d12",
                    accent_colour="#0f766e",
                    email_text="Hello {first_name}, {company_name} now offers Blink.")
    with django_capture_on_commit_callbacks(execute=True):
        blink_user_invite(client=acme_client, actor=SYSTEM, object_ids=[ticked.object_id])
    [message] = smtp_server.mailbox.messages
    assert message["To"] == ticked.email
    assert message["Subject"] == "Activate Blink for your Acme IT account"
    assert message["Reply-To"] == "help@acme-it.example"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert f"Hello {ticked.given_name}, Acme IT now offers Blink." in text
    assert "help@acme-it.example" in text and "help@acme-it.example" in html
    assert "#7c2d12" in html
    link = re.search(r"https://blink\.acme-it\.example(/activate/[\w-]+/)", text)
    assert link is not None
    assert client.get(link.group(1))["Location"] == "/activate/phone/"
    blink_user = BlinkUser.objects.get(object_id=ticked.object_id)
    assert blink_user.activation_email_status == "sent"


def test_a_refused_email_is_recorded_and_the_link_never_works(
    smtp_server, acme_client, ticked, django_capture_on_commit_callbacks
):
    smtp_server.mailbox.refuse_with = "550 5.1.1 No such mailbox"
    with django_capture_on_commit_callbacks(execute=True):
        blink_user_invite(client=acme_client, actor=SYSTEM, object_ids=[ticked.object_id])
    blink_user = BlinkUser.objects.get(object_id=ticked.object_id)
    assert blink_user.activation_email_status == "failed"
    assert "mail server refused" in blink_user.activation_email_error
    assert blink_user.activation_token_hash is None


def test_an_unreachable_mail_server_is_recorded(
    smtp_server, settings, acme_client, ticked, django_capture_on_commit_callbacks
):
    settings.EMAIL_PORT = 1
    with django_capture_on_commit_callbacks(execute=True):
        blink_user_invite(client=acme_client, actor=SYSTEM, object_ids=[ticked.object_id])
    blink_user = BlinkUser.objects.get(object_id=ticked.object_id)
    assert blink_user.activation_email_status == "failed"
    assert "could not be reached" in blink_user.activation_email_error
