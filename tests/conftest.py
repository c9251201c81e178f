"""Fixtures every test can use: a company with an owner, an admin, a read-only member,
and an outsider who is the owner of another company."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from unittest import mock

import pytest
import redis
from django.contrib.auth import get_user_model
from django.test import Client as HttpClient
from pytest_django.fixtures import Settings

import blink.celery
from blink.audit import SYSTEM
from blink.models import BlinkUser
from clients.models import Client, Company, Membership, Role
from clients.services import client_create, company_create
from directory.demo import DemoDirectory, demo_directory_seed
from directory.models import Connection, Entry
from directory.services import connection_save, directory_sync
from sms.backends.locmem import SentSms
from tests.broker import BROKER_REDIS_DB, Broker, broker_url
from tests.servers import ON_CI, unavailable

pytest_plugins = ["tests.fixtures.samba", "tests.fixtures.graph", "tests.fixtures.smtp",
                  "tests.fixtures.twilio", "tests.fixtures.proxy"]

PASSWORD = "correct horse battery staple"
# What docker-compose's central worker consumes.
CENTRAL_QUEUES = frozenset({"default", "directory", "sms"})



@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """On CI nothing may skip: a safety net behind ``tests.servers.unavailable`` for skips
    that come from elsewhere (a plugin, a marker)."""
    outcome = yield
    report = outcome.get_result()
    if ON_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"Skipped under CI=true, which counts as a failure: {reason}"


@pytest.fixture
def worker_queues(monkeypatch: pytest.MonkeyPatch, settings: Settings
                  ) -> Callable[[frozenset[str]], None]:
    """Make this test process look like a (non-eager) worker consuming the given queues."""

    def become(queues: frozenset[str]) -> None:
        monkeypatch.setattr(blink.celery, "_consumed_queues", queues)
        settings.CELERY_TASK_ALWAYS_EAGER = False

    return become


@pytest.fixture
def directory_calls() -> Iterator[mock.MagicMock]:
    """DemoDirectory.reset_password, still working, with every call recorded."""
    with mock.patch.object(DemoDirectory, "reset_password", autospec=True,
                           side_effect=DemoDirectory.reset_password) as spied:
        yield spied


def demo_blink_user(client: Client, connection: Connection, phone: str, *,
                    status: str = "active", enabled: bool = True,
                    protected: bool = False) -> BlinkUser:
    """A Blink user for a demo-directory user not given to Blink yet (the first by username
    with those flags)."""
    used = BlinkUser.objects.filter(connection=connection).values("object_id")
    entry = (Entry.objects.filter(connection=connection, kind="user", enabled=enabled,
                                  protected=protected)
             .exclude(object_id__in=used).order_by("username").first())
    assert entry is not None
    return BlinkUser.objects.create(
        client=client, connection=connection, object_id=entry.object_id,
        username=entry.username, display_name=entry.name, phone=phone, status=status,
    )


def password_in(body: str) -> str:
    """The temporary password in the text Blink sends with it."""
    match = re.search(r"is:\n(\S+)\n", body)
    assert match, body
    return match.group(1)


def _user(username: str):
    return get_user_model().objects.create_user(
        username=username, email=f"{username}@example.com", password=PASSWORD
    )


@pytest.fixture
def company(db: None) -> Company:
    return company_create(name="Acme IT", site_url="https://blink.acme-it.example",
                          owner=_user("olivia"))


@pytest.fixture
def other_company(db: None) -> Company:
    return company_create(name="Rival MSP", site_url="https://blink.rival.example",
                          owner=_user("oscar"))


@pytest.fixture
def owner(company: Company):
    return Membership.objects.get(company=company, role=Role.OWNER).user


@pytest.fixture
def admin(company: Company):
    user = _user("adam")
    Membership.objects.create(user=user, company=company, role=Role.ADMIN)
    return user


@pytest.fixture
def reader(company: Company):
    user = _user("rita")
    Membership.objects.create(user=user, company=company, role=Role.READ_ONLY)
    return user


@pytest.fixture
def outsider(other_company: Company):
    return Membership.objects.get(company=other_company, role=Role.OWNER).user


@pytest.fixture
def acme_client(company: Company) -> Client:
    return client_create(company=company, actor=SYSTEM, name="Globex")


@pytest.fixture
def pin_client(acme_client: Client) -> Client:
    """Globex, whose SMS reset needs the user's PIN."""
    acme_client.sms_reset_needs_pin = True
    acme_client.save()
    return acme_client


@pytest.fixture
def rival_client(other_company: Company) -> Client:
    return client_create(company=other_company, actor=SYSTEM, name="Initech")


@pytest.fixture
def login(db: None) -> Callable[..., HttpClient]:
    """A test browser signed in as the given user."""

    def sign_in(user) -> HttpClient:
        browser = HttpClient()
        browser.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
        return browser

    return sign_in


PERSONAS = ["owner", "admin", "reader", "outsider"]


@pytest.fixture(params=PERSONAS)
def persona(
    request: pytest.FixtureRequest, login: Callable[..., HttpClient]
) -> tuple[str, HttpClient]:
    """Each of the four people in turn, signed in: (name, browser)."""
    user = request.getfixturevalue(request.param)
    return request.param, login(user)



@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Each test starts with no send-cap counters or other cached state."""
    from django.core.cache import caches

    for backend in caches.all(initialized_only=True):
        backend.clear()


@pytest.fixture(autouse=True)
def sms_outbox() -> list[SentSms]:
    """What phones received in this test, through the locmem backend tests.settings uses."""
    from sms.backends import locmem

    locmem.outbox.clear()
    return locmem.outbox


@pytest.fixture
def demo_connection(acme_client: Client) -> Connection:
    """Acme's client Globex on the demo directory, seeded and synced."""
    connection = connection_save(client=acme_client, actor=SYSTEM, kind="demo", parameters={},
                                 secrets={})
    demo_directory_seed(connection)
    directory_sync(connection_id=connection.pk, claimed=True)
    return connection


@pytest.fixture
def broker() -> Iterator[Broker]:
    """An empty Redis broker no worker consumes: ``with broker.publishing():`` sends the
    block's tasks there, for the test to read (``queued``) or run (``run``)."""
    url = broker_url(BROKER_REDIS_DB)
    found = Broker(url)
    try:
        found.empty()
    except redis.RedisError as error:
        unavailable(f"The broker tests need Redis at {url} (set REDIS_URL): {error}")
    yield found
    found.empty()
