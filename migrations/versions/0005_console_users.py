"""console users, sessions, sign-in limits, search indexes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 18:23:09

- Console users (`receiver users`), with an argon2id digest of their password and a role; their
  failed sign-ins (a user is locked after too many in a window); their sign-in sessions (a row
  per signed-in browser, deleted on sign-out); fixed-window counters of the sign-in rate limit per
  address, shared by every process when there is no Redis.
- Messages by `custom`, `cid` and `foreign_id`, newest first, are one index range scan each (the
  console's search; the API's `custom` filter); the console's health page reads the last webhook
  of each source (raw events by source and time).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import receiver.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_counters",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("expires_at", receiver.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_counters")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("password_digest", sa.String(length=255), nullable=False),
        sa.Column(
            "role",
            sa.Enum("viewer", "operator", "admin", name="role", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("created_at", receiver.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("password_changed_at", receiver.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "console_sessions",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", receiver.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", receiver.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_console_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sessions")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_console_sessions_token_sha256")),
    )
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_console_sessions_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_console_sessions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "sign_in_failures",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("at", receiver.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sign_in_failures_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_failures")),
    )
    with op.batch_alter_table("sign_in_failures", schema=None) as batch_op:
        batch_op.create_index("ix_sign_in_failures_user_id_at", ["user_id", "at"], unique=False)

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_custom")
        batch_op.create_index(
            "ix_messages_custom_created_at_id", ["custom", "created_at", "id"], unique=False
        )
        batch_op.create_index("ix_messages_cid_created_at_id", ["cid", "created_at", "id"], unique=False)
        batch_op.create_index(
            "ix_messages_foreign_id_created_at_id", ["foreign_id", "created_at", "id"], unique=False
        )

    with op.batch_alter_table("raw_events", schema=None) as batch_op:
        batch_op.create_index("ix_raw_events_source_received_at", ["source", "received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("raw_events", schema=None) as batch_op:
        batch_op.drop_index("ix_raw_events_source_received_at")

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_foreign_id_created_at_id")
        batch_op.drop_index("ix_messages_cid_created_at_id")
        batch_op.drop_index("ix_messages_custom_created_at_id")
        batch_op.create_index("ix_messages_custom", ["custom"], unique=False)

    with op.batch_alter_table("sign_in_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_sign_in_failures_user_id_at")

    op.drop_table("sign_in_failures")
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_sessions_user_id"))
        batch_op.drop_index(batch_op.f("ix_console_sessions_expires_at"))

    op.drop_table("console_sessions")
    op.drop_table("users")
    op.drop_table("rate_counters")
