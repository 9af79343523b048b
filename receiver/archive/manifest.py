"""The manifest: what an archive holds, the hash of every file, and the link to the previous archive."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from alembic.script import ScriptDirectory

from .. import migrate
from .format import FORMAT, ArchiveError, _dec_datetime, _enc_datetime

# What "received before DATE" means for each kind; written into every manifest for its readers.
SELECTION = {
    "raw_events": "received_at < before; plus later raw events that archived message events refer to",
    "messages": "created_at < before (first heard of), each with all its events, whenever they came",
    "inbound_messages": "received_at < before",
    "calls": "received_at < before, each with all its recordings (files under recordings/)",
    "opt_outs": "received_at < before",
    "contact_events": "received_at < before",
}


@dataclass
class Manifest:
    name: str
    before: datetime
    since: datetime | None
    schema: str | None
    counts: dict[str, int] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    previous: dict[str, str] | None = None
    format: int = FORMAT

    def to_bytes(self) -> bytes:
        document = {
            "format": self.format,
            "name": self.name,
            "schema": self.schema,
            "period": {
                "from": _enc_datetime(self.since) if self.since else None,
                "before": _enc_datetime(self.before),
            },
            "selection": SELECTION,
            "counts": self.counts,
            "columns": self.columns,
            "files": self.files,
            "previous": self.previous,
        }
        return (json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Manifest:
        """Parse a manifest, refusing one from a newer receiver with a message that says so."""
        try:
            document = json.loads(data)
            fmt = document["format"]
        except (ValueError, KeyError, TypeError):
            raise ArchiveError(f"{where}: the manifest is not valid JSON of an archive manifest") from None
        if not isinstance(fmt, int) or fmt > FORMAT:
            raise ArchiveError(
                f"{where}: archive format {fmt} is newer than this receiver reads ({FORMAT}); "
                "upgrade receiver to use it"
            )
        schema = document.get("schema")
        if schema is not None and schema not in known_revisions():
            raise ArchiveError(
                f"{where}: made by a newer receiver (database schema revision {schema!r} is unknown "
                "here); upgrade receiver to use it"
            )
        try:
            period = document["period"]
            return cls(
                name=document["name"],
                before=_dec_datetime(period["before"]),
                since=_dec_datetime(period["from"]) if period.get("from") else None,
                schema=schema,
                counts=dict(document["counts"]),
                files=dict(document["files"]),
                columns=dict(document.get("columns") or {}),
                previous=document.get("previous"),
                format=fmt,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveError(f"{where}: the manifest is incomplete or malformed ({exc!r})") from None


def manifest_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_REVISIONS: set[str] | None = None


def known_revisions() -> set[str]:
    """Every schema revision this receiver's migrations know."""
    global _REVISIONS
    if _REVISIONS is None:
        script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
        _REVISIONS = {rev.revision for rev in script.walk_revisions()}
    return _REVISIONS
