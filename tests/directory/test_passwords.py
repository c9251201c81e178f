from __future__ import annotations

import secrets

import pytest
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
    policy = TWELVE
    assert len({temporary_password(policy) for _ in range(200)}) == 200


TWELVE = PasswordPolicy(min_length=12, complexity=True)


def _first_draw_forced(monkeypatch, draw: str) -> list[str]:
    """Make ``temporary_password``'s first attempt spell ``draw`` (one character per
    ``secrets.choice`` call, no shuffle) and later attempts random; return every draw."""
    real_choice = secrets.choice
    forced = iter(draw)
    drawn: list[str] = []

    def choice(seq):
        character = next(forced, None) or real_choice(seq)
        drawn.append(character)
        return character

    monkeypatch.setattr(secrets, "choice", choice)
    # randbelow(index + 1) == index swaps each character with itself.
    monkeypatch.setattr(secrets, "randbelow", lambda bound: bound - 1)
    return drawn


@pytest.mark.parametrize(
    "display_name",
    ["Jean-Luc Picard", "Picard, Jean.Luc", "jean_luc#picard", "Jean\tLuc Picard"],
)
def test_every_delimiter_ad_splits_on_is_used(monkeypatch, display_name):
    # One lower, upper, digit and symbol, then "LUC" from the whole alphabet: AD would
    # refuse this for a display name it splits into jean, luc, picard.
    forced = "aQ3!LUCxyzwv"
    drawn = _first_draw_forced(monkeypatch, forced)

    password = temporary_password(TWELVE, avoid=("jpicard", display_name))

    assert len(drawn) > len(forced)  # the forced first attempt was drawn and thrown away
    assert password != forced and "luc" not in password.lower()


def test_name_parts_shorter_than_three_characters_are_allowed(monkeypatch):
    # AD ignores "Li" and "Wu" in "Li Wu-Chen"; refusing them would only cost draws.
    forced = "aQ3!LiWUxyzw"
    drawn = _first_draw_forced(monkeypatch, forced)

    password = temporary_password(TWELVE, avoid=("Li Wu-Chen",))

    assert password == forced and len(drawn) == len(forced)


def test_the_account_name_is_avoided_whole_too(monkeypatch):
    # "ac#de" splits into parts too short to count, but as the account name it counts whole.
    forced = "xQ3!AC#DEyzw"
    drawn = _first_draw_forced(monkeypatch, forced)

    password = temporary_password(TWELVE, avoid=("ac#de",))

    assert len(drawn) > len(forced) and "ac#de" not in password.lower()
