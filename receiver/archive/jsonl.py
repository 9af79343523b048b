"""The archive's data files: gzipped JSON lines, written deterministically with a running SHA-256
and size, read back a line at a time."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from typing import IO, Any

from .format import GZIP_LEVEL


class HashingWriter:
    """A binary sink that hashes and counts what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


def gzip_writer(sink: HashingWriter) -> gzip.GzipFile:
    """A deterministic gzip stream: no file name, mtime 0, a fixed level."""
    return gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=GZIP_LEVEL, mtime=0)


def iter_raw_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """The lines of a `.jsonl.gz` stream, without their newline, one at a time."""
    with gzip.GzipFile(fileobj=stream, mode="rb") as unzipped:
        for raw in unzipped:
            yield raw.rstrip(b"\n")


def iter_lines(stream: IO[bytes]) -> Iterator[dict[str, Any]]:
    """The rows of a `.jsonl.gz` stream, one dict at a time."""
    for raw in iter_raw_lines(stream):
        yield json.loads(raw)
