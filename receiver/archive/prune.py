"""`receiver archive prune`: delete from the database the rows a verified archive holds, and only those.

A row is deleted only when its current content, serialized the same way, is byte for byte the
archived line: a message that got a late status after the export (a new event, a new status) is
kept and goes into the next archive. Each batch is its own short transaction that locks the rows it
compares (FOR UPDATE on PostgreSQL, an immediate write transaction on SQLite), so ingest is never
locked out for long, and an interrupted prune simply starts over: deleted rows are "already gone".
Referrers go before what they refer to; a raw event is kept while any row still refers to it.

A call is kept, with its recordings, while any of them is still being fetched (not yet `stored` or
`failed`): deleting the row would end the download. Last, the archive's recording files that no
remaining recording refers to are removed (receiver.recordings.files: never while a download or an
import is about to refer to one again).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from tqdm import tqdm

from ..models import RecordingState
from ..recordings.files import remove_unreferenced
from ..stats.rollup import rebuild_for
from .destination import Destination
from .format import (
    CALLS,
    KINDS,
    MANIFEST,
    PRUNE_ORDER,
    RAW,
    RECORDINGS,
    ArchiveError,
    Kind,
    columns,
    line,
)
from .jsonl import iter_raw_lines
from .manifest import Manifest
from .verify import verify_archive

BATCH = 500
FINAL_RECORDING_STATES = frozenset({RecordingState.stored.value, RecordingState.failed.value})


@dataclass
class PruneResult:
    name: str
    where: str
    before: datetime
    deleted: Counter[str] = field(default_factory=Counter)
    changed: Counter[str] = field(default_factory=Counter)
    gone: Counter[str] = field(default_factory=Counter)
    referenced: int = 0
    downloading: int = 0  # calls kept while a recording of theirs is not stored or failed yet
    files_removed: int = 0


def newest_archive(dest: Destination, before: datetime) -> tuple[str, Manifest]:
    """The newest archive of `dest` whose cutoff is at or before `before`."""
    for name in reversed(dest.archives()):
        manifest = Manifest.from_bytes(dest.read(name, MANIFEST), dest.where(name))
        if manifest.before <= before:
            return name, manifest
    raise ArchiveError(
        f"no archive in {dest.url} covers rows before {before:%Y-%m-%dT%H:%M:%SZ}; "
        "export one first (nothing was deleted)"
    )


def prune(
    engine: sa.Engine,
    dest: Destination,
    before: datetime,
    *,
    recordings_dir: str | os.PathLike[str],
    batch: int = BATCH,
    progress: bool = False,
) -> PruneResult:
    """Delete the rows of the newest verified archive at or before `before` that are unchanged,
    then the archive's recording files no remaining recording refers to.

    :raises ArchiveError: no such archive, or it does not verify (then nothing is deleted).
    """
    name, _ = newest_archive(dest, before.astimezone(UTC))
    verified = verify_archive(dest, name, progress=progress)
    result = PruneResult(name, verified.where, verified.manifest.before)
    for kind in PRUNE_ORDER:
        paths = sorted(p for p in verified.manifest.files if p.startswith(kind.name + "/"))
        total = verified.manifest.counts.get(kind.table.name, 0)
        with tqdm(total=total, desc=f"prune {kind.name}", unit="rows", disable=not progress) as bar:
            for path in paths:
                with dest.open(name, path) as stream:
                    for lines in _batches(iter_raw_lines(stream), batch):
                        _prune_batch(engine, kind, lines, result, _older(verified.manifest, kind))
                        bar.update(len(lines))
    archived_files = [
        entry["sha256"]
        for path, entry in verified.manifest.files.items()
        if path.startswith(RECORDINGS + "/")
    ]
    result.files_removed = remove_unreferenced(engine, Path(recordings_dir), archived_files, batch)
    return result


def _batches(lines: Iterator[bytes], size: int) -> Iterator[list[tuple[Any, str]]]:
    chunk: list[tuple[Any, str]] = []
    for raw in lines:
        text = raw.decode()
        chunk.append((json.loads(text)["id"], text))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _older(manifest: Manifest, kind: Kind) -> dict[str, set[str]] | None:
    """The archived columns of the kind's tables when the archive lacks some of today's (it was
    made before they existed), else None."""
    tables = [t for t in (kind.table, kind.child) if t is not None]
    archived = {t.name: set(manifest.columns.get(t.name) or t.c.keys()) for t in tables}
    if all(archived[t.name] >= set(t.c.keys()) for t in tables):
        return None
    return archived


def _lock(conn: sa.Connection) -> None:
    """Make the batch's compare-then-delete atomic on SQLite (PostgreSQL locks the rows instead)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _prune_batch(
    engine: sa.Engine,
    kind: Kind,
    lines: list[tuple[Any, str]],
    result: PruneResult,
    archived: dict[str, set[str]] | None,
) -> None:
    """Delete the rows whose current line (in the archive's columns) is the archived one."""
    table = kind.table
    ids = [row_id for row_id, _ in lines]
    with engine.connect() as conn:
        _lock(conn)
        selected = columns(table, conn.dialect.name)
        rows = conn.execute(sa.select(*selected).where(table.c.id.in_(ids)).with_for_update()).all()
        children: dict[Any, list[sa.Row[Any]]] = {row.id: [] for row in rows}
        if kind.child is not None and rows:
            fk = kind.child.c[kind.child_fk]  # type: ignore[index]
            stmt = (
                sa.select(*columns(kind.child, conn.dialect.name))
                .where(fk.in_(list(children)))
                .order_by(fk, kind.child.c.id)
                .with_for_update()
            )
            for child in conn.execute(stmt):
                children[child._mapping[kind.child_fk]].append(child)  # type: ignore[index]
        current = {row.id: line(kind, row, children[row.id], archived) for row in rows}
        same = [row_id for row_id, text in lines if current.get(row_id) == text]
        result.gone[table.name] += len(ids) - len(current)
        result.changed[table.name] += len(current) - len(same)
        if kind is CALLS:
            fetching = {
                row_id
                for row_id in same
                if any(child._mapping["state"] not in FINAL_RECORDING_STATES for child in children[row_id])
            }
            result.downloading += len(fetching)
            same = [row_id for row_id in same if row_id not in fetching]
        if same:
            _delete(conn, kind, same, result)
        conn.commit()


def _delete(conn: sa.Connection, kind: Kind, ids: list[Any], result: PruneResult) -> None:
    table = kind.table
    if kind.child is not None:
        fk = kind.child.c[kind.child_fk]  # type: ignore[index]
        deleted = conn.execute(sa.delete(kind.child).where(fk.in_(ids))).rowcount
        result.deleted[kind.child.name] += deleted
    where: sa.ColumnElement[bool] = table.c.id.in_(ids)
    if kind is RAW:
        for other in KINDS:
            for referrer in (other.table, other.child):
                if referrer is not None and "raw_event_id" in referrer.c:
                    where = where & ~sa.exists().where(referrer.c.raw_event_id == table.c.id)
    created = None
    if table.name == "messages":  # the statistics count each message in the hour of its created_at
        created = conn.execute(sa.select(table.c.created_at).where(where)).scalars().all()
    deleted = conn.execute(sa.delete(table).where(where)).rowcount
    result.deleted[table.name] += deleted
    if created:
        rebuild_for(conn, created)
    if kind is RAW:
        result.referenced += len(ids) - deleted
