from __future__ import annotations

import pytest

from blink.audit import SYSTEM
from directory.base import Directory, DirectoryError
from directory.demo import POLICY, DemoDirectory, demo_directory_seed
from directory.models import Connection
from directory.passwords import temporary_password
from directory.services import connection_save


@pytest.fixture
def demo(acme_client) -> DemoDirectory:
    connection = connection_save(client=acme_client, actor=SYSTEM, kind="demo", parameters={},
                                 secrets={})
    demo_directory_seed(connection)
    return DemoDirectory(connection.pk)


def by_username(demo: DemoDirectory, username: str):
    return next(u for u in demo.snapshot().users if u.username == username)


def ordinary(demo: DemoDirectory, index: int = 0):
    """An enabled, unprivileged user."""
    users = [u for u in demo.snapshot().users if u.enabled and not u.protected]
    return sorted(users, key=lambda u: u.username)[index]


def test_demo_speaks_the_directory_protocol(demo):
    assert isinstance(demo, Directory)
    assert "demo directory (" in demo.test_connection()


def test_seeded_company_has_nested_ous_groups_and_one_protected_admin(demo):
    snap = demo.snapshot()
    assert 55 <= len(snap.users) <= 70
    ous = {ou.name: ou for ou in snap.org_units}
    assert ous["EMEA"].parent_dn == ous["Sales"].dn
    groups = {g.name: g for g in snap.groups}
    # Sales holds its regional groups' users through nesting.
    assert groups["Sales EMEA"].member_ids < groups["Sales"].member_ids
    assert groups["Sales Americas"].member_ids < groups["Sales"].member_ids
    assert [u.username for u in snap.users if u.protected] == ["dadmin"]
    assert any(not u.enabled for u in snap.users)
    assert any(not u.email for u in snap.users)


def test_seeding_twice_adds_nothing(demo, acme_client):
    connection = Connection.objects.get(client=acme_client)
    before = len(demo.snapshot().users)
    assert demo_directory_seed(connection) == before
    assert len(demo.snapshot().users) == before


def test_reset_sets_a_password_that_must_be_changed(demo):
    user = ordinary(demo)
    password = temporary_password(POLICY)
    demo.reset_password(user.object_id, password, must_change=True)
    assert demo.sign_in(user.object_id, password) == "must_change"
    assert demo.sign_in(user.object_id, "wrong") == "wrong_password"


def test_policy_violations_are_refused_in_words(demo):
    user = ordinary(demo)
    with pytest.raises(DirectoryError, match="at least 10 characters") as short:
        demo.reset_password(user.object_id, "Ab1!")
    assert short.value.code == "policy" and short.value.permanent
    with pytest.raises(DirectoryError, match="mix three of"):
        demo.reset_password(user.object_id, "alllowercaseletters")


def test_protected_admin_is_refused(demo):
    admin = by_username(demo, "dadmin")
    assert demo.is_protected(admin.object_id)
    with pytest.raises(DirectoryError) as refused:
        demo.reset_password(admin.object_id, temporary_password(POLICY))
    assert refused.value.code == "protected"


def test_failed_sign_ins_lock_and_unlock_restores(demo, django_assert_num_queries):
    user, other = ordinary(demo, 0), ordinary(demo, 1)
    password = temporary_password(POLICY)
    demo.reset_password(user.object_id, password, must_change=False)
    for _ in range(POLICY.lockout_threshold):
        demo.sign_in(user.object_id, "wrong")
    assert demo.sign_in(user.object_id, password) == "locked"
    with django_assert_num_queries(1):
        locked = demo.locked_out([user.object_id, other.object_id])
    assert list(locked) == [user.object_id]
    demo.unlock(user.object_id)
    assert demo.locked_out([user.object_id]) == {}
    assert demo.sign_in(user.object_id, password) == "ok"


def test_reset_with_unlock_clears_the_lockout(demo):
    user = ordinary(demo)
    for _ in range(POLICY.lockout_threshold):
        demo.sign_in(user.object_id, "wrong")
    assert demo.locked_out([user.object_id])
    demo.reset_password(user.object_id, temporary_password(POLICY), unlock=True)
    assert demo.locked_out([user.object_id]) == {}


def test_unknown_user_is_not_found(demo):
    with pytest.raises(DirectoryError) as missing:
        demo.get_user("no-such-id")
    assert missing.value.code == "not_found"
