"""reconciliation: where each event came from, and the runs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 18:30:00

- Message events, inbound messages and calls get an `origin`: `webhook` (every row stored
  before) or `pull` (fetched back from the provider's pull APIs by `receiver reconcile`). A
  pulled row has no webhook request behind it, so their `raw_event_id` may be null.
- `reconcile_runs`: one row per reconciliation run, with its counts, progress and error.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import receiver.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLES = ("message_events", "inbound_messages", "calls")


def _origin() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "origin",
        sa.Enum("webhook", "pull", name="origin", native_enum=False, length=16),
        server_default="webhook",
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "reconcile_runs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("started_at", receiver.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", receiver.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", receiver.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resumed_from", BigId, nullable=True),
        sa.Column("pages_done", sa.Integer(), server_default="0", nullable=False),
        sa.Column("pages_total", sa.Integer(), nullable=True),
        sa.Column("seen", sa.Integer(), server_default="0", nullable=False),
        sa.Column("new_rows", sa.Integer(), server_default="0", nullable=False),
        sa.Column("new_statuses", sa.Integer(), server_default="0", nullable=False),
        sa.Column("unchanged", sa.Integer(), server_default="0", nullable=False),
        sa.Column("recordings", sa.Integer(), server_default="0", nullable=False),
        sa.Column("differences", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_runs")),
    )
    with op.batch_alter_table("reconcile_runs", schema=None) as batch_op:
        batch_op.create_index("ix_reconcile_runs_kind_day_id", ["kind", "day", "id"], unique=False)
        batch_op.create_index("ix_reconcile_runs_started_at_id", ["started_at", "id"], unique=False)

    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(_origin())
            batch_op.alter_column("raw_event_id", existing_type=BigId, nullable=True)


def downgrade() -> None:
    # Pulled rows have no raw event, which the older schema requires: they go.
    op.execute("DELETE FROM recordings WHERE call_id IN (SELECT id FROM calls WHERE raw_event_id IS NULL)")
    for table in TABLES:
        op.execute(f"DELETE FROM {table} WHERE raw_event_id IS NULL")
    op.execute("DELETE FROM messages WHERE id NOT IN (SELECT message_id FROM message_events)")
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("raw_event_id", existing_type=BigId, nullable=False)
            batch_op.drop_column("origin")
    with op.batch_alter_table("reconcile_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_reconcile_runs_started_at_id")
        batch_op.drop_index("ix_reconcile_runs_kind_day_id")
    op.drop_table("reconcile_runs")
