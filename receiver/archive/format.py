"""The archive's bytes: which tables go in, how a row becomes one canonical JSON line, the manifest.

Determinism is the point: rows ordered by (time, primary key), JSON with sorted keys and no spaces,
bytes as base64, datetimes as ISO 8601 UTC with microseconds, decimals as text, gzip with mtime 0
and no file name. The same rows therefore always give the same files, and the same files the same
manifest hash.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import sqlalchemy as sa

from ..db import UTCDateTime
from ..models import Call, ContactEvent, InboundMessage, Message, MessageEvent, OptOut, RawEvent, Recording
from ..numbers import canonical

FORMAT = 1
MANIFEST = "manifest.json"
RECORDINGS = "recordings"
GZIP_LEVEL = 6


class ArchiveError(Exception):
    """A problem the operator must see: the message says what and where."""


class ArchiveInvalid(ArchiveError):
    """An archive that does not verify; `problems` names each mismatch."""

    def __init__(self, archive: str, problems: list[str]) -> None:
        self.archive = archive
        self.problems = problems
        shown = "\n  ".join(problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"archive {archive} does not verify:\n  {shown}{more}")


@dataclass(frozen=True)
class Kind:
    """One top-level kind of archived row, stored under `<name>/<day>.jsonl.gz`.

    `time_column` chooses the rows (`< before`) and the day file; `child` rows are embedded in
    their parent's line under `child_key` so a message travels with its whole history.
    """

    name: str
    table: sa.Table
    time_column: str
    child: sa.Table | None = None
    child_key: str | None = None
    child_fk: str | None = None


RAW = Kind("raw_events", RawEvent.__table__, "received_at")  # type: ignore[arg-type]
MESSAGES = Kind(
    "messages",
    Message.__table__,  # type: ignore[arg-type]
    "created_at",
    MessageEvent.__table__,  # type: ignore[arg-type]
    "events",
    "message_id",
)
INBOUND = Kind("inbound_messages", InboundMessage.__table__, "received_at")  # type: ignore[arg-type]
CALLS = Kind(
    "calls",
    Call.__table__,  # type: ignore[arg-type]
    "received_at",
    Recording.__table__,  # type: ignore[arg-type]
    "recordings",
    "call_id",
)
OPT_OUTS = Kind("opt_outs", OptOut.__table__, "received_at")  # type: ignore[arg-type]
CONTACTS = Kind("contact_events", ContactEvent.__table__, "received_at")  # type: ignore[arg-type]

# Parents before children: the order of export and import (foreign keys point at raw_events).
KINDS: tuple[Kind, ...] = (RAW, MESSAGES, INBOUND, CALLS, OPT_OUTS, CONTACTS)
KINDS_BY_NAME = {kind.name: kind for kind in KINDS}
# Referrers before referenced: the order of pruning.
PRUNE_ORDER: tuple[Kind, ...] = (MESSAGES, INBOUND, CALLS, OPT_OUTS, CONTACTS, RAW)
TABLES: tuple[sa.Table, ...] = tuple(t for kind in KINDS for t in (kind.table, kind.child) if t is not None)


# -- values ---------------------------------------------------------------------------------------


def encoding(column: sa.Column[Any]) -> str:
    """How a column's values are written: plain JSON, or text with a stated encoding."""
    kind = column.type
    if isinstance(kind, UTCDateTime | sa.DateTime):
        return "datetime"
    if isinstance(kind, sa.LargeBinary):
        return "base64"
    if isinstance(kind, sa.Numeric) and not isinstance(kind, sa.Float | sa.Integer):
        return "decimal"
    return "json"


def _enc_datetime(value: datetime | str) -> str:
    if isinstance(value, str):  # formatted by the database: see `columns`
        if value.endswith("Z"):
            return value
        if len(value) == 19:  # SQLite text without microseconds
            value += ".000000"
        return f"{value[:10]}T{value[11:]}Z"
    text = value.isoformat(timespec="microseconds")
    if text.endswith("+00:00"):  # the common case, and much faster than strftime
        return text[:-6] + "Z"
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _enc_base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _enc_decimal(value: Decimal) -> str:
    return str(value)


def _enc_json(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _dec_datetime(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _dec_base64(value: str) -> bytes:
    return base64.b64decode(value.encode("ascii"), validate=True)


ENCODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": _enc_datetime,
    "base64": _enc_base64,
    "decimal": _enc_decimal,
    "json": _enc_json,
}
DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": _dec_datetime,
    "base64": _dec_base64,
    "decimal": Decimal,
    "json": lambda value: value,
}


class Codec:
    """Turns a table's rows into canonical dicts and back."""

    def __init__(self, table: sa.Table) -> None:
        self.table = table
        # Plain JSON values (str, int, a str-valued enum, dicts) need no conversion: json writes them.
        self.columns = [
            (c.name, None if encoding(c) == "json" else ENCODERS[encoding(c)]) for c in table.columns
        ]
        self.decoders = {c.name: DECODERS[encoding(c)] for c in table.columns}

    def encode(self, row: sa.Row[Any]) -> dict[str, Any]:
        data = {}
        for (name, enc), value in zip(self.columns, row, strict=True):
            data[name] = value if enc is None or value is None else enc(value)
        return data

    def decode(self, data: dict[str, Any]) -> dict[str, Any]:
        unknown = set(data) - set(self.decoders)
        if unknown:
            raise ArchiveError(f"{self.table.name}: columns unknown to this schema: {sorted(unknown)}")
        return {name: (None if value is None else self.decoders[name](value)) for name, value in data.items()}


CODECS: dict[str, Codec] = {table.name: Codec(table) for table in TABLES}

PG_ISO = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def columns(table: sa.Table, dialect: str) -> list[Any]:
    """A table's columns to select for the archive, datetimes already as text.

    Formatting times in the database (PostgreSQL) or taking SQLite's stored UTC text as it is
    skips building a datetime object per value: export runs about twice as fast. `Codec.encode`
    gives the same text either way.
    """
    selected: list[Any] = []
    for column in table.columns:
        if encoding(column) != "datetime":
            selected.append(column)
        elif dialect == "postgresql":
            selected.append(sa.func.to_char(sa.func.timezone("UTC", column), PG_ISO).label(column.name))
        else:
            selected.append(sa.type_coerce(column, sa.String).label(column.name))
    return selected


def columns_description() -> dict[str, dict[str, str]]:
    """Each archived table's columns and their encodings, for the manifest (and future readers)."""
    return {t.name: {c.name: encoding(c) for c in t.columns} for t in TABLES}


def dumps(data: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 text kept as is."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def line_and_day(kind: Kind, row: sa.Row[Any], children: list[sa.Row[Any]] | None = None) -> tuple[str, str]:
    """The archive line of one row (with its children, for messages and calls) and its UTC day."""
    data = CODECS[kind.table.name].encode(row)
    if kind.child is not None:
        codec = CODECS[kind.child.name]
        data[kind.child_key] = [codec.encode(child) for child in children or []]  # type: ignore[index]
    return dumps(data), data[kind.time_column][:10]


def line(
    kind: Kind,
    row: sa.Row[Any],
    children: list[sa.Row[Any]] | None = None,
    columns: Mapping[str, Collection[str]] | None = None,
) -> str:
    """The archive line of one row (with its children, for messages and calls).

    With `columns` (each table's archived columns), only those: the line an archive made before
    the other columns existed holds for the same row.
    """
    if columns is None:
        return line_and_day(kind, row, children)[0]
    data = {k: v for k, v in CODECS[kind.table.name].encode(row).items() if k in columns[kind.table.name]}
    if kind.child is not None:
        codec, kept = CODECS[kind.child.name], columns[kind.child.name]
        data[kind.child_key] = [  # type: ignore[index]
            {k: v for k, v in codec.encode(child).items() if k in kept} for child in children or []
        ]
    return dumps(data)


# Columns derived from others (the canonical form of a number), by table: an archive made before
# they existed lacks them, and import fills them in as ingest would have.
DERIVED_NUMBERS: dict[str, dict[str, str]] = {
    "messages": {"mobile_canonical": "mobile"},
    "inbound_messages": {"from_canonical": "from_number", "to_canonical": "to_number"},
    "calls": {"from_canonical": "from_number", "to_canonical": "to_number"},
    "opt_outs": {"number_canonical": "receiver"},
    "contact_events": {"number_canonical": "number"},
}


def fill_derived(table: str, row: dict[str, Any], country_code: str) -> dict[str, Any]:
    """Give a decoded row the derived columns its archive lacks."""
    for target, source in DERIVED_NUMBERS.get(table, {}).items():
        if target not in row:
            row[target] = canonical(row.get(source), country_code)
    return row


def data_path(kind: Kind, day: str) -> str:
    return f"{kind.name}/{day}.jsonl.gz"


def recording_path(sha256: str) -> str:
    return f"{RECORDINGS}/{sha256[:2]}/{sha256}"


def archive_name(before: datetime) -> str:
    return "archive-" + before.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def parse_before(value: str) -> datetime:
    """A cutoff from `YYYY-MM-DD` (midnight UTC) or an ISO 8601 time (UTC when no zone is given)."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ArchiveError(f"not a date: {value!r} (use YYYY-MM-DD or an ISO 8601 time)") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
