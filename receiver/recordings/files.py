"""Recording files in RECORDINGS_DIR: one file per SHA-256, shared by every recording of those bytes.

A file may be removed only when no recording row refers to its SHA-256, and the check and the
removal must not interleave with a job that is about to refer to it (the downloader storing the
same bytes again, an archive import). So both sides work under one lock per file, held by a
database transaction: a writer makes its row refer to the file and puts the file in place before
it commits; a remover checks for rows and unlinks the file before it commits. Whichever comes
second sees what the first did: a remover that came first leaves no file and the writer puts its
own; a writer that came first leaves a row and the remover keeps the file.

On PostgreSQL the lock is a transaction-level advisory lock per file; on SQLite it is the
database's single write transaction, which the writer holds from its first write and the remover
takes with BEGIN IMMEDIATE.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import orm

from ..models import Recording, RecordingState

# The first key of receiver's advisory locks on recording files ("REC1").
_LOCK_CLASS = 0x52454331
_ADVISORY_LOCK = sa.text("SELECT pg_advisory_xact_lock(CAST(:class AS integer), CAST(:key AS integer))")


def storage_path(directory: str | Path, sha256: str) -> Path:
    """Where the file with this SHA-256 is kept: RECORDINGS_DIR/ab/cd/abcd…"""
    return Path(directory) / sha256[:2] / sha256[2:4] / sha256


class NoAudio(LookupError):
    """No stored file to serve for a recording; the message says why."""


class MissingFile(NoAudio):
    """A recording stored, whose file is not in storage: worth an error in the log."""


def stored_file(session: orm.Session, recording_id: int, directory: str | Path) -> tuple[Recording, Path]:
    """A stored recording and its file, for serving; NoAudio when there is none (unknown
    recording, not stored yet, or its file missing from storage)."""
    recording = session.get(Recording, recording_id)
    if recording is None:
        raise NoAudio(f"no recording {recording_id}")
    if recording.state != RecordingState.stored or recording.sha256 is None:
        raise NoAudio(f"recording {recording_id} is not stored (state {recording.state})")
    path = storage_path(directory, recording.sha256)
    if not path.is_file():
        raise MissingFile(f"recording {recording_id}: file missing from storage")
    return recording, path.resolve()


def lock_files(connection: sa.Connection, shas: Iterable[str]) -> None:
    """Hold the right to add or remove these files until the transaction ends.

    On SQLite the transaction must already be a write transaction (a write done, or BEGIN
    IMMEDIATE): that is the lock.
    """
    if connection.dialect.name != "postgresql":
        return
    for key in sorted({int.from_bytes(bytes.fromhex(sha[:8]), "big", signed=True) for sha in shas}):
        connection.execute(_ADVISORY_LOCK, {"class": _LOCK_CLASS, "key": key})


@contextmanager
def guarded(engine: sa.Engine, shas: Iterable[str]) -> Iterator[sa.Connection]:
    """A write transaction holding the lock on these files; committed at the end of the block."""
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        lock_files(connection, shas)
        yield connection
        connection.commit()


def place(temporary: Path, final: Path) -> None:
    """Put a checked download or restored file in place (under the file's lock).

    The same bytes stored already (same name, same size): the new copy is dropped.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and final.stat().st_size == temporary.stat().st_size:
        temporary.unlink(missing_ok=True)
        return
    os.replace(temporary, final)
    fsync_dir(final.parent)


def remove_unreferenced(engine: sa.Engine, directory: Path, shas: Iterable[str], batch: int = 500) -> int:
    """Remove the files of these SHA-256s that no recording row refers to; return how many."""
    removed = 0
    ordered = sorted(set(shas))
    column = Recording.__table__.c.sha256
    for start in range(0, len(ordered), batch):
        chunk = ordered[start : start + batch]
        with guarded(engine, chunk) as connection:
            referenced = set(connection.scalars(sa.select(column).where(column.in_(chunk)).distinct()))
            for sha in chunk:
                if sha in referenced:
                    continue
                try:
                    storage_path(directory, sha).unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def fsync_dir(path: Path) -> None:
    """Make a folder's new or renamed entries durable (a file's own fsync does not)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
