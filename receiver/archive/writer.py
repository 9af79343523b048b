"""Writing an archive's files into its staging folder, hashing them as they are written."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .destination import CHUNK
from .format import ArchiveError
from .jsonl import HashingWriter, gzip_writer


@dataclass
class ArchiveWriter:
    """The files of one archive being written; one gzip stream open at a time, fsynced on close."""

    staging: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    _path: str | None = None
    _raw: Any = None
    _sink: HashingWriter | None = None
    _gzip: Any = None
    _rows: int = 0

    def write(self, path: str, lines: list[str]) -> None:
        if path != self._path:
            self.close()
            if path in self.files:
                raise RuntimeError(f"{path} written twice: rows out of order")
            target = self.staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            self._raw = open(target, "wb")
            self._sink = HashingWriter(self._raw)
            self._gzip = gzip_writer(self._sink)
            self._path, self._rows = path, 0
        self._gzip.write(("\n".join(lines) + "\n").encode())
        self._rows += len(lines)

    def close(self) -> None:
        if self._path is None:
            return
        assert self._sink is not None
        self._gzip.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        self.files[self._path] = {
            "sha256": self._sink.sha256.hexdigest(),
            "bytes": self._sink.size,
            "rows": self._rows,
        }
        self._path = None

    def copy(self, source: Path, path: str, sha256: str, what: str) -> None:
        """Copy a content-addressed file in, checking it still has the hash it is stored under."""
        if path in self.files:
            return
        target = self.staging / path
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        try:
            with open(source, "rb") as src, open(target, "wb") as dst:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
        except FileNotFoundError:
            raise ArchiveError(f"{what}: its file {source} is missing; nothing was archived") from None
        if digest.hexdigest() != sha256:
            raise ArchiveError(
                f"{what}: its file {source} has SHA-256 {digest.hexdigest()}, not {sha256} as stored; "
                "nothing was archived"
            )
        self.files[path] = {"sha256": sha256, "bytes": size}
