"""Where archives live: a local folder or an S3-compatible bucket (`s3://bucket/prefix`).

A destination holds several archives, one folder (or key prefix) each, named after its cutoff so
that names sort by time. An archive exists once its manifest does: it is written (or uploaded)
last, so an interrupted export never looks like an archive.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from ..recordings.files import fsync_dir
from .format import MANIFEST, ArchiveError

CHUNK = 1 << 20


class Destination(ABC):
    url: str

    @abstractmethod
    def archives(self) -> list[str]:
        """Names of the complete archives (those with a manifest), oldest first."""

    @abstractmethod
    def list_files(self, name: str) -> dict[str, int]:
        """Every file under an archive (manifest included): relative path -> size in bytes."""

    @abstractmethod
    @contextmanager
    def open(self, name: str, path: str) -> Iterator[IO[bytes]]:
        """Read one file of an archive as a binary stream."""

    @abstractmethod
    def publish(self, staging: Path, name: str, files: list[str]) -> None:
        """Make a fully written staging folder the archive `name`; the manifest goes last."""

    @abstractmethod
    def staging_parent(self) -> Path:
        """A folder on local disk to write a new archive into before publishing it."""

    def exists(self, name: str) -> bool:
        return name in self.archives()

    def read(self, name: str, path: str) -> bytes:
        with self.open(name, path) as stream:
            return stream.read()

    def where(self, name: str) -> str:
        return f"{self.url.rstrip('/')}/{name}"


class LocalDestination(Destination):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def archives(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / MANIFEST).is_file())

    def list_files(self, name: str) -> dict[str, int]:
        base = self.root / name
        found: dict[str, int] = {}
        for directory, _dirs, files in os.walk(base):
            for file in files:
                path = Path(directory) / file
                found[path.relative_to(base).as_posix()] = path.stat().st_size
        return found

    @contextmanager
    def open(self, name: str, path: str) -> Iterator[IO[bytes]]:
        try:
            stream = open(self.root / name / path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise ArchiveError(f"{self.where(name)}: {path} is missing") from None
        with stream:
            yield stream

    def staging_parent(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def publish(self, staging: Path, name: str, files: list[str]) -> None:
        target = self.root / name
        try:
            os.rename(staging, target)  # atomic on one file system: all or nothing
        except OSError:
            if target.exists():
                raise FileExistsError(name) from None
            raise
        fsync_dir(self.root)


class S3Destination(Destination):
    """An S3 bucket and prefix; objects get Object Lock retention when the bucket has it enabled."""

    def __init__(self, url: str, settings: dict[str, Any]) -> None:
        import boto3

        rest = url[len("s3://") :]
        self.bucket, _, prefix = rest.partition("/")
        if not self.bucket:
            raise ArchiveError(f"{url}: no bucket (use s3://bucket/prefix)")
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{self.bucket}/{self.prefix}"
        self.client = boto3.client("s3", endpoint_url=settings.get("ARCHIVE_S3_ENDPOINT_URL") or None)
        # Archives are written on local disk first, then uploaded: this folder needs the space.
        self.local = Path(settings.get("VAR_DIR") or tempfile.gettempdir()) / "archive-staging"
        self.retain_days: int = settings.get("ARCHIVE_S3_RETAIN_DAYS") or 0
        self.lock_mode: str = (settings.get("ARCHIVE_S3_LOCK_MODE") or "COMPLIANCE").upper()

    def _call(self, what: str, method: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise ArchiveError(
                f"{self.url}: {what} failed: {error.get('Code')} {error.get('Message', '')}".rstrip()
            ) from None
        except BotoCoreError as exc:
            raise ArchiveError(f"{self.url}: {what} failed: {exc}") from None

    def archives(self) -> list[str]:
        names = []
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/")
        for page in self._call("listing", lambda: list(pages)):
            for common in page.get("CommonPrefixes", []):
                names.append(common["Prefix"][len(self.prefix) :].rstrip("/"))
        return sorted(n for n in names if self._has(f"{self.prefix}{n}/{MANIFEST}"))

    def _has(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise ArchiveError(f"{self.url}: cannot read {key}: {exc}") from None
        return True

    def list_files(self, name: str) -> dict[str, int]:
        base = f"{self.prefix}{name}/"
        found: dict[str, int] = {}
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base)
        for page in self._call("listing", lambda: list(pages)):
            for item in page.get("Contents", []):
                found[item["Key"][len(base) :]] = item["Size"]
        return found

    @contextmanager
    def open(self, name: str, path: str) -> Iterator[IO[bytes]]:
        key = f"{self.prefix}{name}/{path}"
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in {"404", "NoSuchKey", "NotFound"}:
                raise ArchiveError(f"{self.where(name)}: {path} is missing") from None
            raise ArchiveError(f"{self.where(name)}: cannot read {path}: {code}") from None
        body = response["Body"]
        try:
            yield body
        finally:
            body.close()

    def staging_parent(self) -> Path:
        self.local.mkdir(parents=True, exist_ok=True)
        return self.local

    def lock_arguments(self) -> dict[str, Any]:
        """Object Lock settings for each upload: none unless the bucket has Object Lock enabled.

        A bucket with a default retention rule applies it by itself; otherwise each object gets
        `ARCHIVE_S3_RETAIN_DAYS` in `ARCHIVE_S3_LOCK_MODE`.
        """
        from botocore.exceptions import ClientError

        try:
            config = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ObjectLockConfigurationNotFoundError":
                return {}
            raise ArchiveError(f"{self.url}: cannot read the bucket's Object Lock settings: {exc}") from None
        lock = config.get("ObjectLockConfiguration", {})
        if lock.get("ObjectLockEnabled") != "Enabled":
            return {}
        if lock.get("Rule", {}).get("DefaultRetention"):
            return {"ChecksumAlgorithm": "SHA256"}
        if not self.retain_days:
            return {"ChecksumAlgorithm": "SHA256"}
        until = datetime.now(UTC) + timedelta(days=self.retain_days)
        return {
            "ChecksumAlgorithm": "SHA256",
            "ObjectLockMode": self.lock_mode,
            "ObjectLockRetainUntilDate": until,
        }

    def publish(self, staging: Path, name: str, files: list[str]) -> None:
        if self.exists(name):
            raise FileExistsError(name)
        extra = self.lock_arguments()
        for path in [*files, MANIFEST]:
            with open(staging / path, "rb") as body:
                self._call(
                    f"uploading {path}",
                    self.client.put_object,
                    Bucket=self.bucket,
                    Key=f"{self.prefix}{name}/{path}",
                    Body=body,
                    **extra,
                )
        shutil.rmtree(staging, ignore_errors=True)


def destination(where: str, settings: dict[str, Any]) -> Destination:
    """The destination a `--out`/`--from` value names: `s3://bucket/prefix` or a folder."""
    if where.startswith("s3://"):
        return S3Destination(where, settings)
    return LocalDestination(where)


def locate(where: str, settings: dict[str, Any]) -> tuple[Destination, list[str]]:
    """A destination and the archives to act on: one archive when `where` is an archive, else all."""
    if not where.startswith("s3://") and (Path(where) / MANIFEST).is_file():
        path = Path(where).resolve()
        return LocalDestination(path.parent), [path.name]
    if where.startswith("s3://"):
        s3 = S3Destination(where, settings)
        base, _, last = s3.url.rstrip("/").rpartition("/")
        if last and base != "s3:/" and s3._has(f"{s3.prefix}{MANIFEST}"):
            parent = S3Destination(base + "/", settings)
            return parent, [last]
        return s3, s3.archives()
    dest = LocalDestination(where)
    if not Path(where).is_dir():
        raise ArchiveError(f"{where}: no such archive or folder")
    return dest, dest.archives()
