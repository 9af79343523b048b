"""canonical numbers, contact events, API key scopes, replay counters

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 16:00:00

- Every stored phone number gets a canonical twin (receiver.numbers.canonical: digits only, with
  the country code), filled here for the rows already stored, and the number filters' indexes
  move to it. National numbers get DEFAULT_COUNTRY_CODE as the environment (or `.env`) gives it
  when this migration runs, default 91: the same setting, read the same way, as the app's.
- Contact events (`contacts:subscriber:subscription`) get a table of their own.
- API keys get a scope (`read`, the default, for every key made before; or `operate`), and the
  name of a revoked key can be given to a new one: names are unique among active keys only.
- Raw events count their replays (`replays`, `replayed_at`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import receiver.db
from receiver.config import load_setting
from receiver.numbers import canonical

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Rows read and updated at a time while filling the canonical numbers of stored rows.
BATCH = 5000

# table -> (primary key, [(number column, its canonical column)])
NUMBERS = {
    "messages": ("id", [("mobile", "mobile_canonical")]),
    "inbound_messages": ("id", [("from_number", "from_canonical"), ("to_number", "to_canonical")]),
    "calls": ("id", [("from_number", "from_canonical"), ("to_number", "to_canonical")]),
    "opt_outs": ("id", [("receiver", "number_canonical")]),
}


def upgrade() -> None:
    op.create_table(
        "contact_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("raw_event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("contact_id", sa.String(length=255), nullable=True),
        sa.Column("identity", sa.String(length=255), nullable=True),
        sa.Column("number", sa.String(length=255), nullable=True),
        sa.Column("number_canonical", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("first_name", sa.String(length=255), nullable=True),
        sa.Column("last_name", sa.String(length=255), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("occurred_at", receiver.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("contact", sa.JSON(), nullable=True),
        sa.Column("received_at", receiver.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["raw_event_id"], ["raw_events.id"], name=op.f("fk_contact_events_raw_event_id_raw_events")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_events")),
        sa.UniqueConstraint("key", name=op.f("uq_contact_events_key")),
    )
    with op.batch_alter_table("contact_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contact_events_raw_event_id"), ["raw_event_id"], unique=False)
        batch_op.create_index("ix_contact_events_received_at_id", ["received_at", "id"], unique=False)
        batch_op.create_index(
            "ix_contact_events_number_canonical_received_at_id",
            ["number_canonical", "received_at", "id"],
            unique=False,
        )

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "scope",
                sa.Enum("read", "operate", name="apiscope", native_enum=False, length=16),
                server_default="read",
                nullable=False,
            )
        )
        batch_op.drop_constraint(batch_op.f("uq_api_keys_name"), type_="unique")
        batch_op.create_index(
            "uq_api_keys_name_active",
            ["name"],
            unique=True,
            sqlite_where=sa.text("revoked_at IS NULL"),
            postgresql_where=sa.text("revoked_at IS NULL"),
        )

    with op.batch_alter_table("raw_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replays", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("replayed_at", receiver.db.UTCDateTime(timezone=True), nullable=True))

    for table, (_, pairs) in NUMBERS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for _, target in pairs:
                batch_op.add_column(sa.Column(target, sa.String(length=255), nullable=True))

    country_code = load_setting("DEFAULT_COUNTRY_CODE")
    for table, (key, pairs) in NUMBERS.items():
        _fill(table, key, pairs, country_code)

    # The indexes go on once the columns are filled: cheaper than keeping them up to date meanwhile.
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_mobile_created_at_id"))
        batch_op.create_index(
            "ix_messages_mobile_canonical_created_at_id",
            ["mobile_canonical", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_messages_provider_status_created_at_id", ["provider_status", "created_at", "id"], unique=False
        )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_messages_from_number"))
        batch_op.drop_index(batch_op.f("ix_inbound_messages_to_number"))
        batch_op.create_index(
            "ix_inbound_messages_from_canonical_received_at_id",
            ["from_canonical", "received_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_inbound_messages_to_canonical_received_at_id",
            ["to_canonical", "received_at", "id"],
            unique=False,
        )
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calls_from_number"))
        batch_op.drop_index(batch_op.f("ix_calls_to_number"))
        batch_op.create_index(
            "ix_calls_from_canonical_start_at_id", ["from_canonical", "start_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_calls_to_canonical_start_at_id", ["to_canonical", "start_at", "id"], unique=False
        )
    with op.batch_alter_table("opt_outs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_opt_outs_receiver"))
        batch_op.create_index("ix_opt_outs_received_at_id", ["received_at", "id"], unique=False)
        batch_op.create_index(
            "ix_opt_outs_number_canonical_received_at_id",
            ["number_canonical", "received_at", "id"],
            unique=False,
        )
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.create_index("ix_recordings_state_id", ["state", "id"], unique=False)


def _fill(table_name: str, key: str, pairs: list[tuple[str, str]], country_code: str) -> None:
    """Set the canonical columns of every row holding a number, BATCH rows at a time, in key order.

    Plain SELECT ... ORDER BY key LIMIT and an executemany UPDATE by key: the same statements on
    SQLite and PostgreSQL, memory bounded by the batch, each row read once.
    """
    columns = [key, *(name for pair in pairs for name in pair)]
    table = sa.table(table_name, *(sa.column(name) for name in columns))
    sources = [table.c[number] for number, _ in pairs]
    update = (
        sa.update(table)
        .where(table.c[key] == sa.bindparam("b_key"))
        .values({target: sa.bindparam(f"b_{target}") for _, target in pairs})
    )
    bind = op.get_bind()
    last = None
    while True:
        query = (
            sa.select(table.c[key], *sources)
            .where(sa.or_(*(source.is_not(None) for source in sources)))
            .order_by(table.c[key])
            .limit(BATCH)
        )
        if last is not None:
            query = query.where(table.c[key] > last)
        rows = bind.execute(query).all()
        if not rows:
            return
        bind.execute(
            update,
            [
                {
                    "b_key": row[0],
                    **{
                        f"b_{target}": canonical(row[i], country_code)
                        for i, (_, target) in enumerate(pairs, start=1)
                    },
                }
                for row in rows
            ],
        )
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.drop_index("ix_recordings_state_id")
    with op.batch_alter_table("opt_outs", schema=None) as batch_op:
        batch_op.drop_index("ix_opt_outs_number_canonical_received_at_id")
        batch_op.drop_index("ix_opt_outs_received_at_id")
        batch_op.create_index(batch_op.f("ix_opt_outs_receiver"), ["receiver"], unique=False)
        batch_op.drop_column("number_canonical")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_to_canonical_start_at_id")
        batch_op.drop_index("ix_calls_from_canonical_start_at_id")
        batch_op.create_index(batch_op.f("ix_calls_to_number"), ["to_number"], unique=False)
        batch_op.create_index(batch_op.f("ix_calls_from_number"), ["from_number"], unique=False)
        batch_op.drop_column("to_canonical")
        batch_op.drop_column("from_canonical")
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_messages_to_canonical_received_at_id")
        batch_op.drop_index("ix_inbound_messages_from_canonical_received_at_id")
        batch_op.create_index(batch_op.f("ix_inbound_messages_to_number"), ["to_number"], unique=False)
        batch_op.create_index(batch_op.f("ix_inbound_messages_from_number"), ["from_number"], unique=False)
        batch_op.drop_column("to_canonical")
        batch_op.drop_column("from_canonical")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_provider_status_created_at_id")
        batch_op.drop_index("ix_messages_mobile_canonical_created_at_id")
        batch_op.create_index(
            batch_op.f("ix_messages_mobile_created_at_id"), ["mobile", "created_at", "id"], unique=False
        )
        batch_op.drop_column("mobile_canonical")
    with op.batch_alter_table("raw_events", schema=None) as batch_op:
        batch_op.drop_column("replayed_at")
        batch_op.drop_column("replays")

    # Names are unique again: a revoked key that shares its name with another key is renamed
    # `<name>~<id>` (cut to 64 characters), which keeps it listed and revoked.
    api_keys = sa.table("api_keys", sa.column("id"), sa.column("name"), sa.column("revoked_at"))
    bind = op.get_bind()
    seen: set[str] = set()
    rows = bind.execute(
        sa.select(api_keys.c.id, api_keys.c.name).order_by(
            api_keys.c.revoked_at.is_not(None), api_keys.c.id.desc()
        )
    ).all()
    for key_id, name in rows:
        if name in seen:
            renamed = f"{name[: 63 - len(str(key_id))]}~{key_id}"
            bind.execute(sa.update(api_keys).where(api_keys.c.id == key_id).values(name=renamed))
        seen.add(name)
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_api_keys_name_active",
            sqlite_where=sa.text("revoked_at IS NULL"),
            postgresql_where=sa.text("revoked_at IS NULL"),
        )
        batch_op.create_unique_constraint(batch_op.f("uq_api_keys_name"), ["name"])
        batch_op.drop_column("scope")

    # The contact events go; their raw requests stay (as received), as for every stored event.
    op.drop_table("contact_events")
