"""`receiver archive verify`: recompute every hash, size, row count and chain link of an archive."""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from tqdm import tqdm

from ..wording import plural
from .destination import CHUNK, Destination
from .format import CALLS, KINDS_BY_NAME, MANIFEST, RECORDINGS, ArchiveError, ArchiveInvalid, Kind
from .manifest import Manifest, manifest_hash


@dataclass
class Verified:
    name: str
    where: str
    manifest: Manifest
    manifest_sha256: str
    counts: dict[str, int]
    files: int
    bytes: int


def _gunzip_lines(stream: IO[bytes] | _Counting, digest: Any) -> Iterator[bytes]:
    """Yield the lines of a gzip stream while hashing its compressed bytes."""
    inflate = zlib.decompressobj(wbits=31)
    carry = b""
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        while chunk:
            if inflate.eof:
                raise ValueError("data after the end of the gzip stream")
            # Bounded output per step: memory stays flat however well a file compresses.
            data = carry + inflate.decompress(chunk, CHUNK)
            chunk = inflate.unconsumed_tail
            *lines, carry = data.split(b"\n")
            yield from lines
    if not inflate.eof or inflate.unused_data:
        raise ValueError("the gzip stream is truncated or has trailing data")
    if carry:
        raise ValueError("the last line does not end with a newline")


class _FileCheck:
    """Checks one data file: hash, size, and that every line is a row of its kind and day."""

    def __init__(self, kind: Kind, day: str, counts: Counter[str], recordings: set[str]) -> None:
        self.kind, self.day = kind, day
        self.counts, self.recordings = counts, recordings
        self.rows = 0

    def line(self, raw: bytes) -> None:
        row = json.loads(raw)
        if not isinstance(row, dict) or "id" not in row:
            raise ValueError(f"line {self.rows + 1} is not a row")
        stamp = row.get(self.kind.time_column)
        if not isinstance(stamp, str) or stamp[:10] != self.day:
            raise ValueError(f"line {self.rows + 1}: {self.kind.time_column} {stamp} is not of {self.day}")
        self.rows += 1
        self.counts[self.kind.table.name] += 1
        if self.kind.child is not None:
            children = row.get(self.kind.child_key)
            if not isinstance(children, list):
                raise ValueError(f"line {self.rows}: no {self.kind.child_key} list")
            self.counts[self.kind.child.name] += len(children)
            if self.kind is CALLS:
                for recording in children:
                    if recording.get("state") == "stored" and recording.get("sha256"):
                        self.recordings.add(recording["sha256"])


def _check_file(
    dest: Destination,
    name: str,
    path: str,
    entry: dict[str, Any],
    counts: Counter[str],
    recordings: set[str],
) -> list[str]:
    digest = hashlib.sha256()
    size = 0
    problems: list[str] = []
    kind_name, _, rest = path.partition("/")
    try:
        with dest.open(name, path) as stream:
            if path.endswith(".jsonl.gz") and kind_name in KINDS_BY_NAME:
                check = _FileCheck(KINDS_BY_NAME[kind_name], rest[: -len(".jsonl.gz")], counts, recordings)
                counting = _Counting(stream)
                for raw in _gunzip_lines(counting, digest):
                    check.line(raw)
                size = counting.size
                if check.rows != entry.get("rows"):
                    rows = plural(check.rows, "row")
                    problems.append(f"{path}: {rows}, the manifest says {entry.get('rows')}")
            elif kind_name == RECORDINGS:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                if rest.rpartition("/")[2] != entry.get("sha256"):
                    problems.append(f"{path}: a recording file named other than its SHA-256")
            else:
                problems.append(f"{path}: not a file an archive holds")
    except (ValueError, EOFError, zlib.error) as exc:
        return [f"{path}: corrupted ({exc})"]
    if size != entry.get("bytes"):
        problems.append(f"{path}: {plural(size, 'byte')}, the manifest says {entry.get('bytes')}")
    if digest.hexdigest() != entry.get("sha256"):
        problems.append(
            f"{path}: SHA-256 {digest.hexdigest()} differs from the manifest's {entry.get('sha256')}"
        )
    return problems


class _Counting:
    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self.size = stream, 0

    def read(self, n: int) -> bytes:
        data = self.stream.read(n)
        self.size += len(data)
        return data


def verify_archive(dest: Destination, name: str, *, progress: bool = False) -> Verified:
    """Recompute everything an archive's manifest states; raise `ArchiveInvalid` naming each mismatch.

    :raises ArchiveError: the manifest is missing, unreadable, or from a newer receiver.
    """
    where = dest.where(name)
    data = dest.read(name, MANIFEST)
    manifest = Manifest.from_bytes(data, where)
    problems: list[str] = []
    if manifest.name != name:
        problems.append(f"{MANIFEST}: names the archive {manifest.name}, but it is stored as {name}")
    actual = dest.list_files(name)
    expected = set(manifest.files) | {MANIFEST}
    problems += [f"{path}: missing" for path in sorted(expected - set(actual))]
    problems += [f"{path}: extra file, not in the manifest" for path in sorted(set(actual) - expected)]
    counts: Counter[str] = Counter()
    recordings: set[str] = set()
    total = sum(int(entry.get("bytes", 0)) for entry in manifest.files.values())
    with tqdm(total=total, desc=f"verify {name}", unit="B", unit_scale=True, disable=not progress) as bar:
        for path, entry in sorted(manifest.files.items()):
            if path in actual:
                problems += _check_file(dest, name, path, entry, counts, recordings)
            bar.update(int(entry.get("bytes", 0)))
    if not any("corrupted" in p for p in problems):
        for table, count in sorted(manifest.counts.items()):
            if counts.get(table, 0) != count:
                problems.append(
                    f"{table}: {plural(counts.get(table, 0), 'row')} in the files, the manifest says {count}"
                )
    stored = {path.rpartition("/")[2] for path in manifest.files if path.startswith(RECORDINGS + "/")}
    problems += [
        f"recording {sha}: referenced by a call, its file is not in the archive"
        for sha in sorted(recordings - stored)
    ]
    problems += _chain_problems(dest, manifest)
    if problems:
        raise ArchiveInvalid(where, problems)
    return Verified(
        name, where, manifest, manifest_hash(data), dict(sorted(counts.items())), len(manifest.files), total
    )


def _chain_problems(dest: Destination, manifest: Manifest) -> list[str]:
    link = manifest.previous
    if link is None:
        return []
    previous = link.get("name", "")
    if not dest.exists(previous):
        return [f"broken chain: the previous archive {previous} is not in {dest.url}"]
    data = dest.read(previous, MANIFEST)
    if manifest_hash(data) != link.get("sha256"):
        return [
            f"broken chain: {previous}/{MANIFEST} has SHA-256 {manifest_hash(data)}, "
            f"this archive recorded {link.get('sha256')}"
        ]
    return []


def verify_all(dest: Destination, names: list[str], *, progress: bool = False) -> list[Verified]:
    """Verify several archives of one destination and that each links to the one before it."""
    if not names:
        raise ArchiveError(f"{dest.url}: no archive found")
    results: list[Verified] = []
    problems: list[str] = []
    for name in names:
        try:
            results.append(verify_archive(dest, name, progress=progress))
        except ArchiveInvalid as exc:
            problems += [f"{name}: {p}" for p in exc.problems]
    every = dest.archives()
    for result in results:
        index = every.index(result.name)
        expected = every[index - 1] if index > 0 else None
        linked = (result.manifest.previous or {}).get("name")
        if linked != expected:
            problems.append(
                f"{result.name}: broken chain: links to {linked or 'nothing'}, "
                f"but the archive before it is {expected or 'none'}"
            )
    if problems:
        raise ArchiveInvalid(dest.url, problems)
    return results
