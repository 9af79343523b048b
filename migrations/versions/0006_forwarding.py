"""forwarding: changes outbox, destinations, deliveries

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 18:24:19

- `changes`: the outbox. Each change receiver commits (a message's status, an inbound message, a
  call, a recording's final state, an opt-out) with the resource as the API shows it, written in
  the change's own transaction, numbered (`position`) by the worker in the order rows become
  visible. Changes stored before this migration are not in it.
- `destinations`: the customer's endpoints, their secret, types, limits and counters.
- `deliveries`: one change for one destination, with its attempts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import receiver.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("resource", sa.String(length=300), nullable=False),
        sa.Column("created_at", receiver.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
        sa.UniqueConstraint("position", name=op.f("uq_changes_position")),
    )
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_changes_unsequenced",
            ["id"],
            unique=False,
            sqlite_where=sa.text("position IS NULL"),
            postgresql_where=sa.text("position IS NULL"),
        )

    op.create_table(
        "destinations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("previous_secret", sa.String(length=100), nullable=True),
        sa.Column("previous_secret_expires_at", receiver.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("active", "paused", name="destinationstate", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("rate_limit", sa.Float(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("tokens", sa.Float(), server_default="0", nullable=False),
        sa.Column("tokens_at", receiver.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("throttled_until", receiver.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("retried_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("failed_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", receiver.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_destinations")),
        sa.UniqueConstraint("name", name=op.f("uq_destinations_name")),
    )
    op.create_table(
        "deliveries",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("destination_id", sa.Integer(), nullable=False),
        sa.Column("change_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("resource", sa.String(length=300), nullable=False),
        sa.Column(
            "state",
            sa.Enum("pending", "delivered", "failed", name="deliverystate", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", receiver.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("locked_until", receiver.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", receiver.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", receiver.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["change_id"], ["changes.id"], name=op.f("fk_deliveries_change_id_changes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["destination_id"],
            ["destinations.id"],
            name=op.f("fk_deliveries_destination_id_destinations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "destination_id", "change_id", name=op.f("uq_deliveries_destination_id_change_id")
        ),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deliveries_change_id"), ["change_id"], unique=False)
        batch_op.create_index(
            "ix_deliveries_due", ["destination_id", "state", "next_attempt_at", "position"], unique=False
        )
        batch_op.create_index("ix_deliveries_locked", ["destination_id", "locked_until"], unique=False)
        batch_op.create_index(
            "ix_deliveries_resource", ["destination_id", "resource", "state", "position"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_resource")
        batch_op.drop_index("ix_deliveries_locked")
        batch_op.drop_index("ix_deliveries_due")
        batch_op.drop_index(batch_op.f("ix_deliveries_change_id"))

    op.drop_table("deliveries")
    op.drop_table("destinations")
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_changes_unsequenced",
            sqlite_where=sa.text("position IS NULL"),
            postgresql_where=sa.text("position IS NULL"),
        )

    op.drop_table("changes")
