"""`receiver archive export`: write everything received before a cutoff into a new archive.

Rows stream from one read snapshot (REPEATABLE READ on PostgreSQL, one read transaction on
SQLite) through server-side cursors, one day file open at a time, so memory stays flat. The
archive is written into a staging folder beside the destination and published only when complete.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from tqdm import tqdm

from ..recordings.files import storage_path
from .destination import Destination
from .format import (
    CALLS,
    KINDS,
    MANIFEST,
    MESSAGES,
    RAW,
    ArchiveError,
    Kind,
    archive_name,
    columns,
    columns_description,
    data_path,
    line_and_day,
    recording_path,
)
from .manifest import Manifest, manifest_hash
from .writer import ArchiveWriter

PARTITION = 1000
# Written first: the raw events that archived message events point at are only known afterwards.
EXPORT_ORDER: tuple[Kind, ...] = (MESSAGES, *(k for k in KINDS if k not in (RAW, MESSAGES)), RAW)


@dataclass
class ExportResult:
    name: str
    where: str
    counts: dict[str, int]
    files: int
    bytes: int
    manifest_sha256: str
    already_existed: bool = False


def _rows(conn: sa.Connection, kind: Kind, where: Any) -> Iterator[list[sa.Row[Any]]]:
    table = kind.table
    stmt = (
        sa.select(*columns(table, conn.dialect.name))
        .where(where)
        .order_by(table.c[kind.time_column], table.c.id)
    )
    result = conn.execution_options(yield_per=PARTITION).execute(stmt)
    for partition in result.partitions():
        yield list(partition)  # a list already; typed as a Sequence


def _children(conn: sa.Connection, kind: Kind, parents: list[sa.Row[Any]]) -> dict[Any, list[sa.Row[Any]]]:
    assert kind.child is not None and kind.child_fk is not None
    fk = kind.child.c[kind.child_fk]
    grouped: dict[Any, list[sa.Row[Any]]] = {row.id: [] for row in parents}
    stmt = (
        sa.select(*columns(kind.child, conn.dialect.name))
        .where(fk.in_(list(grouped)))
        .order_by(fk, kind.child.c.id)
    )
    for child in conn.execute(stmt):
        grouped[child._mapping[kind.child_fk]].append(child)
    return grouped


def _selection(kind: Kind, before: datetime) -> list[Any]:
    """The WHERE clauses of a kind's rows, in order (raw events get a second pass: see SELECTION)."""
    table = kind.table
    clauses = [table.c[kind.time_column] < before]
    if kind is RAW:
        events, messages = MESSAGES.child, MESSAGES.table
        assert events is not None
        # One index probe per later raw event (not a set of every archived event's raw id).
        referenced = (
            sa.exists()
            .where(events.c.raw_event_id == table.c.id)
            .where(messages.c.id == events.c.message_id)
            .where(messages.c.created_at < before)
        )
        clauses.append(sa.and_(table.c.received_at >= before, referenced))
    return clauses


def _count(conn: sa.Connection, kind: Kind, where: Any) -> int:
    return conn.scalar(sa.select(sa.func.count()).select_from(kind.table).where(where)) or 0


def _write_kind(
    conn: sa.Connection,
    writer: ArchiveWriter,
    kind: Kind,
    before: datetime,
    counts: dict[str, int],
    recordings_dir: Path,
    progress: bool,
) -> None:
    counts.setdefault(kind.table.name, 0)
    if kind.child is not None:
        counts.setdefault(kind.child.name, 0)
    for where in _selection(kind, before):
        total = _count(conn, kind, where) if progress else None
        with tqdm(total=total, desc=f"export {kind.name}", unit="rows", disable=not progress) as bar:
            for partition in _rows(conn, kind, where):
                children = _children(conn, kind, partition) if kind.child is not None else {}
                lines: list[str] = []
                path = None
                for row in partition:
                    own = children.get(row.id, [])
                    text, day = line_and_day(kind, row, own)
                    row_path = data_path(kind, day)
                    if row_path != path and lines:
                        writer.write(path, lines)  # type: ignore[arg-type]
                        lines = []
                    path = row_path
                    lines.append(text)
                    if kind is CALLS:
                        _copy_recordings(writer, own, recordings_dir)
                    if kind.child is not None:
                        counts[kind.child.name] += len(own)
                if lines:
                    writer.write(path, lines)  # type: ignore[arg-type]
                counts[kind.table.name] += len(partition)
                bar.update(len(partition))
    writer.close()


def _copy_recordings(writer: ArchiveWriter, recordings: list[sa.Row[Any]], recordings_dir: Path) -> None:
    for recording in recordings:
        if recording.state == "stored" and recording.sha256:
            writer.copy(
                storage_path(recordings_dir, recording.sha256),
                recording_path(recording.sha256),
                recording.sha256,
                f"recording {recording.id} of call {recording.call_id}",
            )


def _snapshot(conn: sa.Connection) -> None:
    """Read every table from one snapshot, so the archive is consistent with itself."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN")


def _previous(dest: Destination, name: str) -> tuple[dict[str, str] | None, datetime | None]:
    names = dest.archives()
    later = [n for n in names if n > name]
    if later:
        raise ArchiveError(
            f"{dest.url} already holds a later archive ({later[-1]}); archives chain in time order, "
            "so export a later cutoff"
        )
    earlier = [n for n in names if n < name]
    if not earlier:
        return None, None
    data = dest.read(earlier[-1], MANIFEST)
    previous = Manifest.from_bytes(data, dest.where(earlier[-1]))
    return {"name": earlier[-1], "sha256": manifest_hash(data)}, previous.before


def export_archive(
    engine: sa.Engine,
    dest: Destination,
    before: datetime,
    *,
    recordings_dir: str | os.PathLike[str],
    progress: bool = False,
    now: datetime | None = None,
) -> ExportResult:
    """Export everything received before `before` into a new archive in `dest`.

    :raises ArchiveError: the cutoff is in the future or out of order, a recording file is
        missing or altered, or the archive cannot be written (disk full...); nothing is published.
    """
    before = before.astimezone(UTC)
    if before > (now or datetime.now(UTC)):
        raise ArchiveError(f"--before {before:%Y-%m-%dT%H:%M:%SZ} is in the future: rows may still arrive")
    name = archive_name(before)
    existing = dest.exists(name)
    previous, since = _previous_of_existing(dest, name) if existing else _previous(dest, name)
    parent = dest.staging_parent()
    _remove_stale_partials(parent)
    staging = Path(tempfile.mkdtemp(prefix=f".partial-{name}-", dir=parent))
    try:
        manifest = _write(engine, staging, name, before, since, previous, Path(recordings_dir), progress)
        data = manifest.to_bytes()
        _write_manifest(staging, data)
        files = sorted(manifest.files)
        if existing:
            return _compare_existing(dest, name, data, manifest)
        try:
            dest.publish(staging, name, files)
        except FileExistsError:  # another run published it meanwhile
            return _compare_existing(dest, name, data, manifest)
        return ExportResult(
            name,
            dest.where(name),
            manifest.counts,
            len(files),
            sum(f["bytes"] for f in manifest.files.values()),
            manifest_hash(data),
        )
    except OSError as exc:
        reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror or exc
        raise ArchiveError(
            f"could not write the archive under {staging.parent}: {reason}; "
            "the partial archive was removed and nothing was deleted from the database"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write(
    engine: sa.Engine,
    staging: Path,
    name: str,
    before: datetime,
    since: datetime | None,
    previous: dict[str, str] | None,
    recordings_dir: Path,
    progress: bool,
) -> Manifest:
    writer = ArchiveWriter(staging)
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        # The schema the rows follow (read directly: alembic's context would log at INFO).
        schema = conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
        _snapshot(conn)
        for kind in EXPORT_ORDER:
            _write_kind(conn, writer, kind, before, counts, recordings_dir, progress)
        conn.rollback()
    return Manifest(
        name=name,
        before=before,
        since=since,
        schema=schema,
        counts=dict(sorted(counts.items())),
        files=dict(sorted(writer.files.items())),
        columns=columns_description(),
        previous=previous,
    )


STALE_PARTIAL = timedelta(days=1)


def _remove_stale_partials(parent: Path) -> None:
    """Remove what exports killed outright (no chance to clean up) left over a day ago."""
    limit = datetime.now(UTC) - STALE_PARTIAL
    for path in parent.glob(".partial-*"):
        if datetime.fromtimestamp(path.stat().st_mtime, UTC) < limit:
            shutil.rmtree(path, ignore_errors=True)


def _write_manifest(staging: Path, data: bytes) -> None:
    with open(staging / MANIFEST, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _previous_of_existing(dest: Destination, name: str) -> tuple[dict[str, str] | None, datetime | None]:
    current = Manifest.from_bytes(dest.read(name, MANIFEST), dest.where(name))
    return current.previous, current.since


def _compare_existing(dest: Destination, name: str, data: bytes, manifest: Manifest) -> ExportResult:
    published = dest.read(name, MANIFEST)
    if published != data:
        raise ArchiveError(
            f"{dest.where(name)} exists already and differs from a fresh export of the same period "
            "(rows changed since it was written); it was left as it is"
        )
    return ExportResult(
        name,
        dest.where(name),
        manifest.counts,
        len(manifest.files),
        sum(f["bytes"] for f in manifest.files.values()),
        manifest_hash(data),
        already_existed=True,
    )
