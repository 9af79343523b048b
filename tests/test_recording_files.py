"""A recording file is removed only when no recording refers to it, and never while a download
of the same bytes is storing it: the two sides take turns under the file's lock."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from receiver.models import Recording, RecordingState
from receiver.recordings.files import guarded, lock_files, remove_unreferenced, storage_path
from tests import test_recordings
from tests.provider_stub import voice_record
from tests.test_recordings import post_call, recording_of, run_job

# The recordings tests' stand-in provider, and settings that let downloads reach it.
stub = test_recordings.stub
settings = test_recordings.settings

SHA = Recording.__table__.c.sha256


def _unreferenced_file(directory: Path, audio: bytes) -> tuple[str, Path]:
    """A stored file whose recordings were all pruned."""
    sha = hashlib.sha256(audio).hexdigest()
    path = storage_path(directory, sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(audio)
    return sha, path


def test_a_download_storing_bytes_a_prune_is_removing_puts_the_file_back(app, hooks, stub):
    """The prune (here: the test, holding the file's lock as a prune does) saw no recording and
    removes the file while the download of the same bytes ends: the download waits, then finds
    no file and puts its own copy in place."""
    engine = app.extensions["receiver.db"].engine
    directory = Path(app.config["RECORDINGS_DIR"])
    stub.slow_seconds = 1.0
    sha, path = _unreferenced_file(directory, stub.audio_for("/audio/slow/same.mp3"))
    recording = recording_of(app, post_call(hooks, voice_record(stub, "slow", "same")))
    results: list = []
    job = threading.Thread(target=lambda: results.extend(run_job(app, recording.id, max_runs=1)))
    job.start()
    deadline = time.monotonic() + 10
    while stub.hits["/audio/slow/same.mp3"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    with guarded(engine, [sha]) as connection:
        assert connection.scalar(sa.select(sa.func.count()).where(SHA == sha)) == 0
        time.sleep(stub.slow_seconds + 1.0)  # the download ends and reaches its store step
        path.unlink()
    job.join(timeout=30)
    assert [r.state for r in results] == [RecordingState.stored]
    assert recording_of(app, recording.call_id).sha256 == sha
    assert path.read_bytes() == stub.audio_for("/audio/slow/same.mp3")


def test_a_prune_waits_for_a_download_storing_the_same_bytes_and_keeps_the_file(app, hooks, stub):
    """A download (here: the test, writing as a download's store step does) refers to the file
    under its lock; the prune's check waits for it, then sees the reference."""
    engine = app.extensions["receiver.db"].engine
    directory = Path(app.config["RECORDINGS_DIR"])
    audio = stub.audio_for("/audio/ok/kept.mp3")
    sha, path = _unreferenced_file(directory, audio)
    recording = recording_of(app, post_call(hooks, voice_record(stub, "ok", "kept")))
    removed: list[int] = []
    with engine.connect() as writer:
        writer.execute(
            sa.update(Recording.__table__)
            .where(Recording.__table__.c.id == recording.id)
            .values(state="stored", sha256=sha, size_bytes=len(audio))
        )
        lock_files(writer, [sha])
        prune = threading.Thread(target=lambda: removed.append(remove_unreferenced(engine, directory, [sha])))
        prune.start()
        time.sleep(1.0)
        assert path.exists() and prune.is_alive()  # waiting for the file's lock
        writer.commit()
    prune.join(timeout=30)
    assert removed == [0] and path.read_bytes() == audio

    # With no recording referring to it any more, the same call removes it.
    with engine.begin() as connection:
        connection.execute(sa.update(Recording.__table__).values(sha256=None, state="failed"))
    assert remove_unreferenced(engine, directory, [sha]) == 1 and not path.exists()
