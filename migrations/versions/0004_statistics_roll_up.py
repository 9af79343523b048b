"""statistics roll-up: message summaries by hour and day, and an index on messages.updated_at

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 18:24:46

- `stats_message_cells` and `stats_message_delays` hold the summaries the statistics API reads
  (receiver.stats.tables); `stats_rollup_state` the roll-up's watermark. They start empty: the
  worker's first roll-up works through the stored messages a day at a time, and until it has,
  the API reads the messages themselves.
- `messages.updated_at` gets an index: the roll-up, and each query, find the messages changed
  since the watermark by it. Building it reads the whole table once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import receiver.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _dimensions() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("service", sa.String(length=255), nullable=True),
        sa.Column("sender", sa.String(length=255), nullable=True),
        sa.Column("operator", sa.String(length=255), nullable=True),
        sa.Column("region", sa.String(length=255), nullable=True),
        sa.Column("provider_status", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
    ]


def _period() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("grain", sa.SmallInteger(), nullable=False),
        sa.Column("span", sa.String(length=1), nullable=False),
        sa.Column("period_start", receiver.db.UTCDateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "stats_message_cells",
        *_period(),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("credits_e4", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        *_dimensions(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_message_cells")),
    )
    op.create_index(
        "ix_stats_message_cells_grain_span_period_start",
        "stats_message_cells",
        ["grain", "span", "period_start"],
    )
    op.create_table(
        "stats_message_delays",
        *_period(),
        sa.Column("delay_us", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        *_dimensions(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_message_delays")),
    )
    op.create_index(
        "ix_stats_message_delays_grain_span_period_start",
        "stats_message_delays",
        ["grain", "span", "period_start"],
    )
    op.create_table(
        "stats_rollup_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("watermark", receiver.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("backfill_started_at", receiver.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("backfill_done_until", receiver.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ran_at", receiver.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_rollup_state")),
    )
    op.create_index("ix_messages_updated_at", "messages", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_messages_updated_at", table_name="messages")
    op.drop_table("stats_rollup_state")
    op.drop_index("ix_stats_message_delays_grain_span_period_start", table_name="stats_message_delays")
    op.drop_table("stats_message_delays")
    op.drop_index("ix_stats_message_cells_grain_span_period_start", table_name="stats_message_cells")
    op.drop_table("stats_message_cells")
