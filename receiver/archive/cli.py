"""`receiver archive export|verify|prune|import`: thin click wrappers over the archive services."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext

from ..db import get_db
from ..wording import plural
from .destination import destination, locate
from .export import export_archive
from .format import ArchiveError, ArchiveInvalid, parse_before
from .policy import run_policy
from .prune import prune
from .restore import import_archive
from .verify import verify_all


def _engine() -> sa.Engine:
    engine = get_db().engine
    assert engine is not None
    return engine


def _progress() -> bool:
    return sys.stderr.isatty()


@contextmanager
def _failures(action: str) -> Iterator[None]:
    """Turn archive problems and interruptions into a message and a non-zero exit."""
    try:
        yield
    except ArchiveInvalid as exc:
        raise click.ClickException(f"{exc}\n{action} refused: nothing was changed") from None
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        raise click.ClickException(f"{action} interrupted; run it again to finish") from None


def _counts(counts: Any) -> str:
    return ", ".join(f"{table} {count}" for table, count in sorted(counts.items()) if count) or "no rows"


def _size(files: int, size: int) -> str:
    return f"{plural(files, 'file')}, {plural(size, 'byte')}"


@click.group("archive", help="Compliance archives: export, verify, prune, import, and the daily policy.")
def archive_cli() -> None:
    pass


@archive_cli.command("export")
@click.option("--before", "before", required=True, help="Cutoff: YYYY-MM-DD (UTC midnight) or ISO time.")
@click.option("--out", help="A folder or s3://bucket/prefix holding the archives (default ARCHIVE_DIR).")
@with_appcontext
def export_command(before: str, out: str | None) -> None:
    """Export everything received before a date into a new archive, chained to the previous one."""
    config = current_app.config
    with _failures("export"):
        dest = destination(out or config["ARCHIVE_DIR"], config)
        result = export_archive(
            _engine(),
            dest,
            parse_before(before),
            recordings_dir=config["RECORDINGS_DIR"],
            progress=_progress(),
        )
    state = "already exported, identical" if result.already_existed else "exported"
    click.echo(f"{result.where}: {state}: {_counts(result.counts)}; {_size(result.files, result.bytes)}")
    click.echo(f"manifest SHA-256 {result.manifest_sha256}")


@archive_cli.command("verify")
@click.argument("where", required=False)
@with_appcontext
def verify_command(where: str | None) -> None:
    """Recompute an archive (or every archive of a folder or bucket) and check the chain."""
    config = current_app.config
    with _failures("verify"):
        dest, names = locate(where or config["ARCHIVE_DIR"], config)
        results = verify_all(dest, names, progress=_progress())
    for result in results:
        click.echo(f"{result.where}: OK: {_counts(result.counts)}; {_size(result.files, result.bytes)}")


@archive_cli.command("prune")
@click.option("--before", "before", required=True, help="Prune what the newest archive up to here holds.")
@click.option("--from", "source", help="Where the archives are (default ARCHIVE_DIR).")
@click.option("--batch", default=500, show_default=True, help="Rows per transaction.")
@with_appcontext
def prune_command(before: str, source: str | None, batch: int) -> None:
    """Delete from the database the rows a verified archive holds (unchanged since), in batches."""
    config = current_app.config
    with _failures("prune"):
        dest = destination(source or config["ARCHIVE_DIR"], config)
        result = prune(
            _engine(),
            dest,
            parse_before(before),
            recordings_dir=config["RECORDINGS_DIR"],
            batch=batch,
            progress=_progress(),
        )
    click.echo(f"{result.where}: verified; deleted {_counts(result.deleted)}")
    if result.changed:
        click.echo(f"kept, changed since the export (they go in the next archive): {_counts(result.changed)}")
    if result.downloading:
        click.echo(f"kept {plural(result.downloading, 'call')} whose recordings are still being fetched")
    if result.referenced:
        click.echo(f"kept {plural(result.referenced, 'raw event')} still referred to by newer rows")
    click.echo(f"recording files removed (no recording left refers to them): {result.files_removed}")
    if result.gone:
        click.echo(f"already gone: {_counts(result.gone)}")


@archive_cli.command("import")
@click.argument("where")
@click.option("--batch", default=1000, show_default=True, help="Rows per transaction.")
@with_appcontext
def import_command(where: str, batch: int) -> None:
    """Restore a verified archive's rows and recordings into this database."""
    config = current_app.config
    with _failures("import"):
        dest, names = locate(where, config)
        if len(names) != 1:
            raise ArchiveError(f"{where}: name one archive (found {len(names)})")
        result = import_archive(
            _engine(),
            dest,
            names[0],
            recordings_dir=config["RECORDINGS_DIR"],
            batch=batch,
            progress=_progress(),
            country_code=config["DEFAULT_COUNTRY_CODE"],
        )
    click.echo(f"{result.where}: imported {_counts(result.inserted)}")
    if result.present:
        click.echo(f"already present, left as they were: {_counts(result.present)}")
    click.echo(f"recording files restored: {result.recordings_copied}")


@archive_cli.command("policy")
@with_appcontext
def policy_command() -> None:
    """Run the ARCHIVE_AFTER_DAYS policy once now: export, verify, prune."""
    with _failures("policy"):
        run = run_policy(current_app.config, _engine())
    if run is None:
        raise click.ClickException("ARCHIVE_AFTER_DAYS is not set: the archive policy is off")
    made = run.export.where if run.export else f"{run.prune.where} (made earlier)"
    click.echo(f"archive {made}; deleted {_counts(run.prune.deleted)}")
