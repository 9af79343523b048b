"""Passwords: argon2id digests (argon2-cffi's defaults), checked in constant time.

A password KDF is right here, unlike for webhook secrets: a sign-in is rare, and a person's
password is short enough to guess at if its digest leaked.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
# Checked against when the user does not exist, so that an unknown name takes as long as a wrong password.
_DUMMY = _HASHER.hash("not a password anyone has")

MIN_LENGTH = 10
MAX_LENGTH = 1024


def check_strength(password: str) -> str | None:
    """Why a password cannot be used, or None."""
    if len(password) < MIN_LENGTH:
        return f"a password must be at least {MIN_LENGTH} characters long"
    if len(password) > MAX_LENGTH:
        return f"a password must be at most {MAX_LENGTH} characters long"
    return None


def digest(password: str) -> str:
    return _HASHER.hash(password)


def matches(password: str, stored: str | None) -> bool:
    """Whether `password` is the one `stored` was made from (a dummy check when there is none)."""
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False
