"""Fixtures for the SMS tests: a Blink user with a phone, a company with its own number,
and helpers that run the send task the way a worker would."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings
from django.test import Client as HttpClient

from blink.models import BlinkUser
from clients.models import Client, Company
from directory.models import Connection
from sms.models import Message
from tests.broker import Broker
from tests.fakes.twilio import FakeTwilio

USER_PHONE = "+14155550123"
STRANGER_PHONE = "+14155550177"
BLINK_NUMBER = "+14155550100"
INBOUND_URL = "/sms/twilio/inbound"
STATUS_URL = "/sms/twilio/status"
# The arguments of an inbound_receive task, as the broker holds them.
Queued = tuple[int, str, str, str]




@pytest.fixture
def numbered(company: Company) -> Company:
    """The company with its own Blink number, so texts to it are routed to it."""
    company.sms_number = BLINK_NUMBER
    company.save()
    return company


@pytest.fixture
def blink_user(acme_client: Client) -> BlinkUser:
    connection = Connection.objects.create(client=acme_client, kind=Connection.Kind.DEMO)
    return BlinkUser.objects.create(
        client=acme_client, connection=connection, object_id="u-alex", username="alex",
        display_name="Alex Morgan", email="alex@globex.example", phone=USER_PHONE,
        status=BlinkUser.Status.ACTIVE,
    )


@pytest.fixture
def send_now(django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """Run ``action`` and then its on-commit callbacks (the task, eagerly), as after a commit."""

    def run(action: Callable[[], Any]) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return action()

    return run


def fresh(message: Message) -> Message:
    return Message.objects.get(pk=message.pk)


def post_form(browser: HttpClient, path: str, params: Any, signature: str | None = None
              ) -> Any:
    """POST form fields the way Twilio does (urlencoded, lists as repeated fields)."""
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    return browser.post(path, urlencode(params, doseq=True),
                        content_type="application/x-www-form-urlencoded", headers=headers)


@pytest.fixture
def twilio_webhooks(twilio_backend: FakeTwilio) -> FakeTwilio:
    """The stand-in, with Blink sending through it and trusting its webhook signatures."""
    return twilio_backend


def text_blink(browser: HttpClient, fake: FakeTwilio, company: Company | None, body: str,
               *, from_: str = USER_PHONE, to: str = BLINK_NUMBER, num_media: int = 0,
               sid: str | None = None) -> Any:
    """A user's text to the Blink number, as Twilio's signed webhook delivers it."""
    params = fake.inbound(to=to, from_=from_, body=body, num_media=num_media, sid=sid)
    site = company.site_url if company is not None else django_settings.BLINK_SITE_URL
    signature = fake.sign(site + INBOUND_URL, params)
    return post_form(browser, INBOUND_URL, params, signature)


@pytest.fixture
def webhook(twilio_webhooks: FakeTwilio, numbered: Company, client: HttpClient,
            broker: Broker) -> Callable[..., Queued]:
    """Text Blink through the signed webhook, publishing to a broker no worker takes from:
    the task's arguments as the broker holds them."""

    def send(body: str, from_: str = USER_PHONE) -> Queued:
        with broker.publishing():
            response = text_blink(client, twilio_webhooks, numbered, body, from_=from_)
        assert response.status_code == 200
        [task] = broker.queued()
        broker.empty()
        assert (task.task, task.queue) == ("sms.tasks.inbound_receive", "sms")
        # What monitoring and worker logs show of the task.
        assert task.argsrepr == "(sealed)"
        company_id, blink_number, provider_id, sealed = task.args
        return company_id, blink_number, provider_id, sealed

    return send


def receive(task: Queued) -> Message | None:
    """What the worker does with an inbound_receive task."""
    from sms.inbound import inbound_receive

    company_id, blink_number, provider_id, sealed = task
    return inbound_receive(company_id=company_id, blink_number=blink_number,
                           provider_id=provider_id, sealed=sealed)
