from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from directory.base import PasswordPolicy
from directory.passwords import (
    ALPHABET,
    CATEGORIES,
    temporary_password,
    temporary_password_length,
)

policies = st.builds(
    PasswordPolicy,
    min_length=st.integers(min_value=0, max_value=64),
    complexity=st.booleans(),
    history_length=st.integers(min_value=0, max_value=24),
    max_length=st.integers(min_value=64, max_value=256),
)


@given(policy=policies, requested=st.integers(min_value=0, max_value=80))
def test_length_never_below_the_policy_or_the_request(policy, requested):
    password = temporary_password(policy, length=requested)
    assert len(password) >= policy.min_length
    assert len(password) >= min(requested, policy.max_length)
    assert len(password) <= policy.max_length
    assert len(password) == temporary_password_length(policy, requested)


@given(policy=policies)
def test_every_category_present_and_only_readable_characters(policy):
    password = temporary_password(policy)
    assert all(any(c in category for c in password) for category in CATEGORIES)
    assert set(password) <= set(ALPHABET)
    assert not set(password) & set("0O1lI5S2Z8Bo")


@given(name=st.text(alphabet="abcdefghijkmnpqrstuvwxyz", min_size=3, max_size=4))
def test_never_contains_the_account_name(name):
    policy = PasswordPolicy(min_length=8, complexity=True)
    for _ in range(20):
        assert name not in temporary_password(policy, length=8, avoid=(name,)).lower()


def test_passwords_differ():
    policy = PasswordPolicy(min_length=12, complexity=True)
    assert len({temporary_password(policy) for _ in range(200)}) == 200
