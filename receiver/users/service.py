"""Service: console users, sign-in with a lock after repeated failures, and sign-in sessions.

Owns its transactions. Nothing is read and then written on the strength of what was read: a
failed sign-in is recorded before its password is checked, and the lock counts the recorded
failures afterwards, so concurrent guesses from several processes cannot slip past the limit.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.exc import IntegrityError

from ..db import utcnow
from ..models import ConsoleSession, Role, SignInFailure, User
from . import passwords

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
LOCK_FAILURES = 10
LOCK_WINDOW = timedelta(minutes=15)


class UserError(Exception):
    """A command on users that cannot be done (name taken, unknown, invalid, weak password)."""


@dataclass(frozen=True)
class SignedIn:
    """Who a live console session belongs to."""

    token: str
    user_id: int
    name: str
    role: Role


class SignInRefused(Exception):
    """Wrong name or password, or a locked user; the message never says which."""

    def __init__(self, locked: bool) -> None:
        super().__init__("locked" if locked else "wrong name or password")
        self.locked = locked


def _check_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(f"invalid user name {name!r}: 1 to 64 letters, digits, '.', '_', '@' or '-'")


def _check_password(password: str) -> None:
    problem = passwords.check_strength(password)
    if problem:
        raise UserError(problem)


def add_user(session: orm.Session, name: str, password: str, role: Role = Role.viewer) -> None:
    _check_name(name)
    _check_password(password)
    try:
        with session.begin():
            session.add(User(name=name, password_digest=passwords.digest(password), role=Role(role)))
    except IntegrityError:
        raise UserError(f"a user named {name!r} exists already") from None


def list_users(session: orm.Session, *, after: str | None = None, limit: int = 1000) -> list[User]:
    """Users by name, `limit` of them after the name `after`."""
    statement = sa.select(User).order_by(User.name).limit(limit)
    if after is not None:
        statement = statement.where(User.name > after)
    with session.begin():
        return list(session.scalars(statement))


def remove_user(session: orm.Session, name: str) -> None:
    """Delete the user; their sessions end with them."""
    with session.begin():
        user_id = session.scalar(sa.select(User.id).where(User.name == name))
        if user_id is None:
            raise UserError(f"no user named {name!r}")
        session.execute(sa.delete(ConsoleSession).where(ConsoleSession.user_id == user_id))
        session.execute(sa.delete(SignInFailure).where(SignInFailure.user_id == user_id))
        session.execute(sa.delete(User).where(User.id == user_id))


def set_password(session: orm.Session, name: str, password: str) -> None:
    """Give the user a new password; every session they had ends."""
    _check_password(password)
    with session.begin():
        user_id = session.scalar(sa.select(User.id).where(User.name == name))
        if user_id is None:
            raise UserError(f"no user named {name!r}")
        session.execute(
            sa.update(User)
            .where(User.id == user_id)
            .values(password_digest=passwords.digest(password), password_changed_at=utcnow())
        )
        session.execute(sa.delete(ConsoleSession).where(ConsoleSession.user_id == user_id))


def set_role(session: orm.Session, name: str, role: Role) -> None:
    with session.begin():
        result = session.execute(sa.update(User).where(User.name == name).values(role=Role(role)))
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise UserError(f"no user named {name!r}")


def _token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(session: orm.Session, name: str, password: str, lifetime: timedelta) -> SignedIn:
    """Check the password and start a session; SignInRefused if wrong or while the user is locked.

    The attempt is recorded as a failure first and counted with the others of the window: when
    there were already LOCK_FAILURES, the user is locked and the password is not even checked.
    A right password then takes its own record back.
    """
    now = utcnow()
    with session.begin():
        user = session.scalars(sa.select(User).where(User.name == name)).one_or_none()
        if user is not None:
            attempt = SignInFailure(user_id=user.id, at=now)
            session.add(attempt)
    if user is None:
        passwords.matches(password, None)  # as long as a wrong password takes
        raise SignInRefused(locked=False)
    with session.begin():
        failures = session.scalar(
            sa.select(sa.func.count())
            .select_from(SignInFailure)
            .where(SignInFailure.user_id == user.id, SignInFailure.at > now - LOCK_WINDOW)
        )
        locked = (failures or 0) > LOCK_FAILURES
        if locked:
            # This attempt is not a guess that was checked, so it does not lengthen the lock.
            session.execute(sa.delete(SignInFailure).where(SignInFailure.id == attempt.id))
    if locked:
        raise SignInRefused(locked=True)
    if not passwords.matches(password, user.password_digest):
        with session.begin():
            session.execute(
                sa.delete(SignInFailure).where(
                    SignInFailure.user_id == user.id, SignInFailure.at < now - LOCK_WINDOW
                )
            )
        raise SignInRefused(locked=False)
    token = secrets.token_urlsafe(32)
    with session.begin():
        session.execute(sa.delete(SignInFailure).where(SignInFailure.id == attempt.id))
        session.execute(sa.delete(ConsoleSession).where(ConsoleSession.expires_at < now))
        session.add(
            ConsoleSession(token_sha256=_token_sha256(token), user_id=user.id, expires_at=now + lifetime)
        )
    return SignedIn(token, user.id, user.name, user.role)


def signed_in(session: orm.Session, token: str | None, now: datetime | None = None) -> SignedIn | None:
    """The user of a live session token, or None (unknown, signed out or expired)."""
    if not token or len(token) > 128:
        return None
    row = session.execute(
        sa.select(User.id, User.name, User.role)
        .join(ConsoleSession, ConsoleSession.user_id == User.id)
        .where(
            ConsoleSession.token_sha256 == _token_sha256(token), ConsoleSession.expires_at > (now or utcnow())
        )
    ).one_or_none()
    if row is None:
        return None
    return SignedIn(token, row.id, row.name, row.role)


def sign_out(session: orm.Session, token: str) -> None:
    """End the session on the server: its cookie is worth nothing from now on."""
    with session.begin():
        session.execute(sa.delete(ConsoleSession).where(ConsoleSession.token_sha256 == _token_sha256(token)))
