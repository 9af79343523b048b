"""ORM classes of console users, their failed sign-ins and their sign-in sessions. No commits."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, BigId, utcnow


class Role(enum.StrEnum):
    viewer = "viewer"  # reads
    operator = "operator"  # also replays events and retries recordings
    admin = "admin"  # also manages sources, API keys and users

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def may(self, needed: Role | str) -> bool:
        """Whether this role may do what `needed` may."""
        return self.rank >= Role(needed).rank


class User(Base):
    """A person who signs in to the console; the password is kept as an argon2id digest."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    password_digest: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[Role] = mapped_column(
        sa.Enum(
            Role,
            native_enum=False,
            length=16,
            values_callable=lambda members: [m.value for m in members],
            validate_strings=True,
        )
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class SignInFailure(Base):
    """One failed sign-in of a user: enough of them within the lock window lock the user out."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (sa.Index("ix_sign_in_failures_user_id_at", "user_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsoleSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is kept here, and
    signing out deletes the row, so a copied cookie stops working too."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    token_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class RateCounter(Base):
    """A fixed-window counter of the sign-in rate limit per address, shared by every process."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    count: Mapped[int]
    expires_at: Mapped[datetime]
