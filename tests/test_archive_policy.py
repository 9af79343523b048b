"""The ARCHIVE_AFTER_DAYS policy, and faults: a full disk, an interrupted export."""

from __future__ import annotations

import logging
import os
import resource
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.archive import LocalDestination, export_archive
from receiver.archive.policy import cutoff, run_policy
from tests.archive_data import CUTOFF, counts, seed, snapshot


@pytest.fixture
def seeded(app: Any, settings: dict[str, Any]) -> Any:
    return seed(app.extensions["receiver.db"].engine, Path(settings["RECORDINGS_DIR"]))


def test_cutoff_is_utc_midnight_days_ago():
    assert cutoff(30, CUTOFF + timedelta(days=30, hours=23)) == CUTOFF


def test_the_policy_is_off_by_default(app, seeded):
    engine = app.extensions["receiver.db"].engine
    before = counts(engine)
    assert app.config["ARCHIVE_AFTER_DAYS"] is None
    assert run_policy(app.config, engine) is None
    assert counts(engine) == before
    result = app.test_cli_runner().invoke(args=["archive", "policy"])
    assert result.exit_code != 0 and "ARCHIVE_AFTER_DAYS is not set" in result.output


def test_the_policy_exports_verifies_prunes_and_logs(app, seeded, caplog):
    app.config["ARCHIVE_AFTER_DAYS"] = 90
    engine = app.extensions["receiver.db"].engine
    now = CUTOFF + timedelta(days=90, hours=3)
    with caplog.at_level(logging.INFO, logger="receiver.archive.policy"):
        run = run_policy(app.config, engine, now=now)
    assert run is not None and run.export is not None and run.before == CUTOFF
    assert run.export.counts["messages"] == 7
    assert run.prune.deleted["messages"] == 7
    assert counts(engine)["messages"] == 3
    archive = Path(app.config["ARCHIVE_DIR"]) / "archive-20260112T000000Z"
    assert (archive / "manifest.json").is_file()
    assert "exported" in caplog.text and "deleted" in caplog.text and "messages 7" in caplog.text

    # Again the same day (a second worker, a retry): the archive is there; nothing more to do.
    again = run_policy(app.config, engine, now=now + timedelta(hours=1))
    assert again is not None and again.export is None
    assert sum(again.prune.deleted.values()) == 0 and again.prune.gone["messages"] == 7


def test_the_worker_queue_has_the_daily_task(app, seeded):
    huey = app.extensions["receiver.huey"]
    due = [t.name for t in huey.read_periodic(datetime(2026, 3, 1, 3, 17))]
    assert "archive_policy" in due
    assert "archive_policy" not in [t.name for t in huey.read_periodic(datetime(2026, 3, 1, 4, 17))]
    app.config["ARCHIVE_AFTER_DAYS"] = 1
    engine = app.extensions["receiver.db"].engine
    task = next(t for t in huey.read_periodic(datetime(2026, 3, 1, 3, 17)) if t.name == "archive_policy")
    huey.execute(task)  # the job itself, as the consumer runs it
    name = "archive-" + cutoff(1).strftime("%Y%m%dT%H%M%SZ")
    assert (Path(app.config["ARCHIVE_DIR"]) / name / "manifest.json").is_file()
    assert counts(engine)["messages"] == 0  # everything seeded is long before yesterday


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))


@pytest.mark.slow  # a `receiver archive export` process
def test_a_write_failure_leaves_no_archive_and_the_database_untouched(app, seeded, settings, tmp_path):
    engine = app.extensions["receiver.db"].engine
    with engine.begin() as conn:  # one incompressible body, so a day file outgrows the limit
        seeded.raw(conn, CUTOFF - timedelta(hours=2), body=os.urandom(300_000))
    before = snapshot(engine)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "DATABASE_URL": settings["DATABASE_URL"],
        "RECORDINGS_DIR": settings["RECORDINGS_DIR"],
        "VAR_DIR": settings["VAR_DIR"],
        "RECEIVER_ENV_FILE": str(tmp_path / "none.env"),
    }
    command = [str(Path(sys.executable).parent / "receiver"), "archive", "export", "--before", "2026-01-12"]
    result = subprocess.run(
        [*command, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        timeout=120,
    )
    assert result.returncode != 0
    assert "could not write the archive" in result.stderr and "File too large" in result.stderr
    assert "nothing was deleted" in result.stderr
    assert list(out.iterdir()) == []  # no archive, no partial folder
    assert snapshot(engine) == before


class InterruptedPublish(LocalDestination):
    """A destination whose publishing is cut short, as by Ctrl-C at the last moment."""

    def publish(self, staging: Path, name: str, files: list[str]) -> None:
        raise KeyboardInterrupt


def test_an_interrupted_export_publishes_nothing(app, seeded, settings, tmp_path):
    engine = app.extensions["receiver.db"].engine
    before = snapshot(engine)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        export_archive(engine, InterruptedPublish(out), CUTOFF, recordings_dir=settings["RECORDINGS_DIR"])
    assert list(out.iterdir()) == []  # the staging folder is gone too
    assert snapshot(engine) == before


def test_an_export_killed_outright_is_cleaned_up_by_a_later_one(app, seeded, settings, tmp_path):
    engine = app.extensions["receiver.db"].engine
    left = tmp_path / ".partial-archive-20260111T000000Z-x1y2"  # as a SIGKILLed export leaves it
    (left / "messages").mkdir(parents=True)
    (left / "messages" / "2026-01-10.jsonl.gz").write_bytes(b"half")
    recent = tmp_path / ".partial-archive-20260111T000000Z-busy"  # maybe another export, running
    recent.mkdir()
    old = (datetime.now() - timedelta(days=2)).timestamp()
    os.utime(left, (old, old))
    export_archive(engine, LocalDestination(tmp_path), CUTOFF, recordings_dir=settings["RECORDINGS_DIR"])
    assert not left.exists() and recent.exists()
    assert LocalDestination(tmp_path).archives() == ["archive-20260112T000000Z"]
