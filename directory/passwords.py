"""Temporary passwords: random, easy to read off a phone, and within the directory's policy."""

from __future__ import annotations

import re
import secrets

from directory.base import PasswordPolicy

# No look-alikes (0/O/o, 1/l/I, 5/S, 2/Z, 8/B) and only symbols that are on the first
# symbol page of phone keyboards and need no escaping when typed at a Windows logon.
LOWER = "abcdefghijkmnpqrstuvwxyz"
UPPER = "ACDEFGHJKLMNPQRTUVWXY"
DIGITS = "34679"
SYMBOLS = "!#%+=?@"
CATEGORIES = (LOWER, UPPER, DIGITS, SYMBOLS)
ALPHABET = "".join(CATEGORIES)

# Short enough to type from an SMS, long enough for AD's usual policies.
DEFAULT_LENGTH = 12
# Where AD splits a display name into the parts a password may not contain: commas,
# periods, hyphens, underscores, number signs, tabs and spaces.
NAME_DELIMITERS = re.compile(r"[,.\-_#\t ]+")
# AD ignores name parts shorter than this.
MIN_NAME_PART = 3


def temporary_password_length(policy: PasswordPolicy, requested: int = DEFAULT_LENGTH) -> int:
    """The length to use: the client's choice, never below the directory's minimum or below
    one character of each category, never above the directory's maximum."""
    length = max(requested, policy.min_length, len(CATEGORIES))
    return min(length, policy.max_length)


def temporary_password(
    policy: PasswordPolicy, *, length: int = DEFAULT_LENGTH, avoid: tuple[str, ...] = ()
) -> str:
    """A new random password from ``secrets`` that meets ``policy``.

    It holds at least one lower-case letter, capital, digit and symbol, so it
    satisfies AD complexity (three of four categories) with room to spare. Neither
    a value in ``avoid`` (the account name, the display name or its words) nor any
    part of one split the way AD splits display names appears in it, in any case, as
    AD complexity also forbids.
    """
    size = temporary_password_length(policy, length)
    forbidden = _name_parts(avoid)
    while True:
        chars = [secrets.choice(category) for category in CATEGORIES]
        chars += [secrets.choice(ALPHABET) for _ in range(size - len(chars))]
        # Shuffle so the guaranteed characters are not always first.
        for index in range(len(chars) - 1, 0, -1):
            swap = secrets.randbelow(index + 1)
            chars[index], chars[swap] = chars[swap], chars[index]
        password = "".join(chars)
        if not any(part in password.lower() for part in forbidden):
            return password


def _name_parts(values: tuple[str, ...]) -> set[str]:
    """Each value whole and its parts split at AD's delimiters, lowercased, where at least
    MIN_NAME_PART long."""
    parts: set[str] = set()
    for value in values:
        for part in (value, *NAME_DELIMITERS.split(value)):
            if len(part) >= MIN_NAME_PART:
                parts.add(part.lower())
    return parts
