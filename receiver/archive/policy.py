"""The archive policy: with `ARCHIVE_AFTER_DAYS` set, export, verify and prune on its own, every day.

The cutoff is UTC midnight `ARCHIVE_AFTER_DAYS` days ago, so one run a day makes one archive a day.
`run_policy` is a plain function (the worker's daily task in receiver.archive.jobs and `receiver
archive policy` call it); a run that finds today's archive already made (another worker, a rerun)
verifies it and prunes again, which deletes only what is still there: every step is safe to repeat.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from .destination import destination
from .export import ExportResult, export_archive
from .format import MANIFEST, archive_name
from .manifest import Manifest
from .prune import PruneResult, prune

log = logging.getLogger(__name__)


@dataclass
class PolicyRun:
    before: datetime
    export: ExportResult | None
    prune: PruneResult


def cutoff(days: int, now: datetime | None = None) -> datetime:
    """UTC midnight `days` days before `now`."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    return datetime.combine(today - timedelta(days=days), time(0), tzinfo=UTC)


def run_policy(config: dict[str, Any], engine: sa.Engine, now: datetime | None = None) -> PolicyRun | None:
    """Archive and prune what is older than ARCHIVE_AFTER_DAYS; None when the policy is off.

    :raises ArchiveError: export, verification or pruning failed; the database keeps every row
        no verified archive holds.
    """
    days = config.get("ARCHIVE_AFTER_DAYS")
    if not days:
        return None
    before = cutoff(int(days), now)
    dest = destination(config["ARCHIVE_DIR"], config)
    name = archive_name(before)
    exported: ExportResult | None = None
    if dest.exists(name):
        Manifest.from_bytes(dest.read(name, MANIFEST), dest.where(name))
        log.info("archive policy: %s exists already; verifying it and pruning again", dest.where(name))
    else:
        exported = export_archive(engine, dest, before, recordings_dir=config["RECORDINGS_DIR"], now=now)
        log.info(
            "archive policy: exported %s (%s), manifest %s",
            exported.where,
            _summary(exported.counts),
            exported.manifest_sha256,
        )
    pruned = prune(engine, dest, before, recordings_dir=config["RECORDINGS_DIR"])
    log.info(
        "archive policy: verified %s; deleted %s; kept as changed since export: %s; "
        "calls whose recordings are still being fetched: %d; raw events still referred to: %d; "
        "recording files removed: %d",
        pruned.where,
        _summary(pruned.deleted),
        _summary(pruned.changed),
        pruned.downloading,
        pruned.referenced,
        pruned.files_removed,
    )
    return PolicyRun(before, exported, pruned)


def _summary(counts: Any) -> str:
    return ", ".join(f"{table} {n}" for table, n in sorted(counts.items()) if n) or "nothing"
