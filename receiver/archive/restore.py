"""`receiver archive import`: put a verified archive's rows (and recording files) back into a database.

Rows keep their ids. A row already present (same key or same unique value) is left as it is, so
importing twice, or into a database that still holds some of the rows, is safe. Parents go first
(raw events, then messages with their events, inbound, calls with their recordings, opt-outs,
contact events). An archive made before a column existed imports too: a derived column it lacks
(the canonical form of a number) is computed as ingest would have.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from tqdm import tqdm

from ..numbers import DEFAULT_COUNTRY_CODE
from ..recordings.files import guarded, place, storage_path
from ..stats.rollup import rebuild_for
from .destination import CHUNK, Destination
from .format import CODECS, KINDS, RECORDINGS, TABLES, ArchiveError, Kind, fill_derived, iter_lines
from .manifest import Manifest
from .verify import verify_archive

BATCH = 1000


@dataclass
class ImportResult:
    name: str
    where: str
    inserted: Counter[str] = field(default_factory=Counter)
    present: Counter[str] = field(default_factory=Counter)
    recordings_copied: int = 0


def import_archive(
    engine: sa.Engine,
    dest: Destination,
    name: str,
    *,
    recordings_dir: str | os.PathLike[str],
    batch: int = BATCH,
    progress: bool = False,
    country_code: str = DEFAULT_COUNTRY_CODE,
) -> ImportResult:
    """Verify an archive, then insert its rows and restore its recording files.

    `country_code` (DEFAULT_COUNTRY_CODE) completes national numbers of rows from an archive made
    before numbers had a canonical form.

    :raises ArchiveError: the archive does not verify, its columns do not fit this schema, or a
        row cannot be inserted (the batch is rolled back; earlier batches stay, rerun is safe).
    """
    verified = verify_archive(dest, name, progress=progress)
    _check_columns(verified.manifest)
    result = ImportResult(name, verified.where)
    for kind in KINDS:
        paths = sorted(p for p in verified.manifest.files if p.startswith(kind.name + "/"))
        total = verified.manifest.counts.get(kind.table.name, 0)
        with tqdm(total=total, desc=f"import {kind.name}", unit="rows", disable=not progress) as bar:
            for path in paths:
                with dest.open(name, path) as stream:
                    for rows in _chunks(iter_lines(stream), batch):
                        _insert_batch(engine, kind, rows, result, path, country_code)
                        bar.update(len(rows))
    for path, entry in sorted(verified.manifest.files.items()):
        if path.startswith(RECORDINGS + "/"):
            sha256 = entry["sha256"]
            result.recordings_copied += _restore_file(engine, dest, name, path, sha256, Path(recordings_dir))
    with engine.begin() as conn:
        _advance_sequences(conn)
    return result


def _check_columns(manifest: Manifest) -> None:
    for table in TABLES:
        archived = manifest.columns.get(table.name)
        if archived is None:
            continue
        unknown = set(archived) - set(table.c.keys())
        if unknown:
            raise ArchiveError(f"{table.name}: the archive has columns this schema lacks: {sorted(unknown)}")
        for column in table.c:
            needed = not column.nullable and column.default is None and column.server_default is None
            if column.name not in archived and needed:
                raise ArchiveError(f"{table.name}: the archive lacks the required column {column.name}")


def _chunks(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).on_conflict_do_nothing().returning(table.c.id)
    return len(conn.execute(stmt, rows).all())


def _insert_batch(
    engine: sa.Engine,
    kind: Kind,
    rows: list[dict[str, Any]],
    result: ImportResult,
    path: str,
    country_code: str,
) -> None:
    codec = CODECS[kind.table.name]
    parents: list[dict[str, Any]] = []
    children: list[dict[str, Any]] = []
    for row in rows:
        if kind.child is not None:
            child_codec = CODECS[kind.child.name]
            children += [child_codec.decode(child) for child in row.pop(kind.child_key)]  # type: ignore[arg-type]
        parents.append(fill_derived(kind.table.name, codec.decode(row), country_code))
    try:
        with engine.begin() as conn:
            inserted = _insert(conn, kind.table, parents)
            result.inserted[kind.table.name] += inserted
            if kind.table.name == "messages" and inserted:  # the statistics count messages by it
                rebuild_for(conn, (row["created_at"] for row in parents))
            result.present[kind.table.name] += len(parents) - inserted
            if kind.child is not None:
                inserted = _insert(conn, kind.child, children)
                result.inserted[kind.child.name] += inserted
                result.present[kind.child.name] += len(children) - inserted
    except IntegrityError as exc:
        raise ArchiveError(
            f"{path}: a row could not be restored ({type(exc.orig).__name__}: "
            f"{str(exc.orig).splitlines()[0]}); this batch was rolled back, earlier ones stay"
        ) from None


def _restore_file(
    engine: sa.Engine, dest: Destination, name: str, path: str, sha256: str, recordings_dir: Path
) -> int:
    """Copy one recording file back unless it is there; its rows are in the database already.

    Whether it is there is asked under the file's lock, and the copy put in place under it, so a
    prune removing unreferenced files cannot remove it in between (receiver.recordings.files).
    """
    target = storage_path(recordings_dir, sha256)
    with guarded(engine, [sha256]):
        if target.exists():
            return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.importing-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with dest.open(name, path) as stream, open(partial, "wb") as out:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise ArchiveError(f"{path}: changed while it was being restored")
        with guarded(engine, [sha256]):
            there = target.exists()
            place(partial, target)
    finally:
        if partial.exists():
            partial.unlink()
    return 0 if there else 1


def _advance_sequences(conn: sa.Connection) -> None:
    """Move PostgreSQL's id sequences past the restored ids, so new rows do not collide with them."""
    if conn.dialect.name != "postgresql":
        return  # SQLite picks max(id) + 1 by itself
    for table in TABLES:
        if not isinstance(table.c.id.type, sa.Integer):
            continue
        sequence = conn.scalar(sa.select(sa.func.pg_get_serial_sequence(table.name, "id")))
        if sequence is None:
            continue
        top = conn.scalar(sa.select(sa.func.max(table.c.id)))
        if top is not None:
            conn.execute(
                sa.text(f"SELECT setval(:seq, GREATEST(:top, (SELECT last_value FROM {sequence})))"),
                {"seq": sequence, "top": top},
            )
