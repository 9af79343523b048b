"""The compliance archive (SPEC §7): export, verify, prune, import, on the real database."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from receiver import migrate
from receiver.archive import LocalDestination, export_archive, import_archive, prune
from receiver.archive.format import ArchiveError, iter_lines
from tests.archive_data import CUTOFF, DAY1, counts, seed, snapshot

BEFORE = CUTOFF.strftime("%Y-%m-%d")


@pytest.fixture
def engine(app: Any) -> sa.Engine:
    return app.extensions["receiver.db"].engine


@pytest.fixture
def seeded(app: Any, engine: sa.Engine, settings: dict[str, Any]) -> Any:
    return seed(engine, Path(settings["RECORDINGS_DIR"]))


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def export(runner: Any, out: Any, before: str = BEFORE) -> Any:
    result = runner.invoke(args=["archive", "export", "--before", before, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return result


def manifest_of(archive: Path) -> dict[str, Any]:
    return json.loads((archive / "manifest.json").read_bytes())


def rows_in(archive: Path, kind: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted((archive / kind).glob("*.jsonl.gz")):
        with open(path, "rb") as stream:
            rows += list(iter_lines(stream))
    return rows


def test_export_writes_everything_before_the_cutoff_and_is_deterministic(runner, seeded, tmp_path):
    first = runner.invoke(args=["archive", "export", "--before", BEFORE, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    second = runner.invoke(args=["archive", "export", "--before", BEFORE, "--out", str(tmp_path / "b")])
    assert second.exit_code == 0, second.output
    archive = tmp_path / "a" / "archive-20260112T000000Z"
    assert files_of(archive) == files_of(tmp_path / "b" / "archive-20260112T000000Z")

    manifest = manifest_of(archive)
    assert manifest["previous"] is None
    assert manifest["period"] == {"from": None, "before": "2026-01-12T00:00:00.000000Z"}
    assert manifest["schema"] == migrate.head_revision()  # the schema it was exported from
    # 2 days x 3 messages + the one that straddles the cutoff, each with all its events.
    assert manifest["counts"]["messages"] == 7
    assert manifest["counts"]["message_events"] == 14
    assert manifest["counts"]["inbound_messages"] == 6
    assert manifest["counts"]["opt_outs"] == 6
    assert manifest["counts"]["contact_events"] == 6
    assert manifest["counts"]["calls"] == 5
    assert manifest["counts"]["recordings"] == 5
    # Raw events of every archived row, including the straddling message's later report.
    assert manifest["counts"]["raw_events"] == 2 * 3 * 5 + 2 + 2 + 1 + 2
    assert sorted(p for p in manifest["files"] if p.startswith("messages/")) == [
        "messages/2026-01-10.jsonl.gz",
        "messages/2026-01-11.jsonl.gz",
    ]
    assert "raw_events/2026-01-12.jsonl.gz" in manifest["files"]  # the straddler's late report
    # Two distinct audio files: the duplicate is stored once; pending recordings have none.
    assert len([p for p in manifest["files"] if p.startswith("recordings/")]) == 2
    for path, entry in manifest["files"].items():
        assert len(entry["sha256"]) == 64 and entry["bytes"] == (archive / path).stat().st_size

    messages = {m["id"]: m for m in rows_in(archive, "messages")}
    assert [e["provider_status"] for e in messages["msg-straddles"]["events"]] == ["AWAITING-DLR", "DELIVRD"]
    assert "msg-2-0" not in messages
    assert messages["msg-0-1"]["credits"] == "2.5000"
    assert messages["msg-0-0"]["created_at"] == "2026-01-10T00:00:00.000000Z"
    assert messages["msg-0-1"]["created_at"] == "2026-01-10T01:00:00.000007Z"
    assert messages["msg-0-1"]["events"][0]["received_at"] == "2026-01-10T01:00:00.000007Z"
    raw = rows_in(archive, "raw_events")[0]
    assert base64.b64decode(raw["body"]).startswith(b'{"id":"x"}\xff\x00')  # the bytes, exactly
    assert raw["received_at"].endswith("Z")
    gz = (archive / "raw_events/2026-01-10.jsonl.gz").read_bytes()
    assert gz[4:8] == b"\0\0\0\0" and gz[3] & 0x08 == 0  # mtime 0, no file name


def test_verify_accepts_a_good_archive_and_names_each_problem(runner, seeded, tmp_path):
    assert (
        runner.invoke(args=["archive", "export", "--before", BEFORE, "--out", str(tmp_path)]).exit_code == 0
    )
    archive = tmp_path / "archive-20260112T000000Z"
    ok = runner.invoke(args=["archive", "verify", str(archive)])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.output

    day = archive / "messages/2026-01-10.jsonl.gz"
    original = day.read_bytes()
    day.write_bytes(original[:-9] + bytes([original[-9] ^ 1]) + original[-8:])
    bad = runner.invoke(args=["archive", "verify", str(archive)])
    assert bad.exit_code != 0
    assert "messages/2026-01-10.jsonl.gz" in bad.output

    day.write_bytes(original)
    (archive / "opt_outs/2026-01-11.jsonl.gz").unlink()
    (archive / "notes.txt").write_text("added later")
    bad = runner.invoke(args=["archive", "verify", str(archive)])
    assert bad.exit_code != 0
    assert "opt_outs/2026-01-11.jsonl.gz: missing" in bad.output
    assert "notes.txt: extra file" in bad.output


def test_a_line_changed_and_recompressed_is_caught_by_hash_and_counts(runner, seeded, tmp_path):
    assert (
        runner.invoke(args=["archive", "export", "--before", BEFORE, "--out", str(tmp_path)]).exit_code == 0
    )
    archive = tmp_path / "archive-20260112T000000Z"
    path = archive / "inbound_messages/2026-01-10.jsonl.gz"
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    path.write_bytes(gzip.compress(b"".join(lines[:-1]), mtime=0))
    bad = runner.invoke(args=["archive", "verify", str(archive)])
    assert bad.exit_code != 0
    assert "inbound_messages/2026-01-10.jsonl.gz: 2 rows, the manifest says 3" in bad.output
    assert "inbound_messages: 5 rows in the files, the manifest says 6" in bad.output


def test_archives_chain_and_a_broken_chain_fails(runner, engine, seeded, tmp_path):
    out = str(tmp_path)
    export(runner, out, "2026-01-11")
    export(runner, out, BEFORE)
    first, second = tmp_path / "archive-20260111T000000Z", tmp_path / "archive-20260112T000000Z"
    link = manifest_of(second)["previous"]
    import hashlib

    assert link == {
        "name": first.name,
        "sha256": hashlib.sha256((first / "manifest.json").read_bytes()).hexdigest(),
    }
    assert manifest_of(second)["period"]["from"] == "2026-01-11T00:00:00.000000Z"
    everything = runner.invoke(args=["archive", "verify", out])
    assert everything.exit_code == 0, everything.output
    assert everything.output.count(": OK:") == 2

    # An earlier cutoff after a later one would fork the chain.
    late = runner.invoke(args=["archive", "export", "--before", "2026-01-10", "--out", out])
    assert late.exit_code != 0 and "later archive" in late.output

    manifest = manifest_of(first)
    manifest["counts"]["messages"] += 0
    (first / "manifest.json").write_text(json.dumps(manifest, indent=2))
    bad = runner.invoke(args=["archive", "verify", str(second)])
    assert bad.exit_code != 0
    assert "broken chain" in bad.output and first.name in bad.output

    import shutil

    shutil.rmtree(first)
    bad = runner.invoke(args=["archive", "verify", out])
    assert bad.exit_code != 0
    assert f"the previous archive {first.name} is not in" in bad.output


def test_manifest_from_a_newer_receiver_is_refused(runner, engine, seeded, tmp_path):
    assert (
        runner.invoke(args=["archive", "export", "--before", BEFORE, "--out", str(tmp_path)]).exit_code == 0
    )
    archive = tmp_path / "archive-20260112T000000Z"
    manifest = manifest_of(archive)
    before = counts(engine)
    for change, words in (
        ({"format": 99}, "archive format 99 is newer"),
        ({"schema": "9999_future"}, "newer receiver"),
    ):
        (archive / "manifest.json").write_text(json.dumps({**manifest, **change}))
        for args in (
            ["verify", str(archive)],
            ["import", str(archive)],
            ["prune", "--before", BEFORE, "--from", str(tmp_path)],
        ):
            result = runner.invoke(args=["archive", *args])
            assert result.exit_code != 0, args
            assert words in result.output
    assert counts(engine) == before

    (archive / "manifest.json").write_text("{not json")
    result = runner.invoke(args=["archive", "verify", str(archive)])
    assert result.exit_code != 0 and "not valid JSON" in result.output


def test_export_prune_import_gives_the_same_rows_back(runner, engine, seeded, tmp_path, settings):
    everything = snapshot(engine)
    out = str(tmp_path / "archives")
    export(runner, out, BEFORE)
    archive = Path(out) / "archive-20260112T000000Z"

    pruned = runner.invoke(args=["archive", "prune", "--before", BEFORE, "--from", out, "--batch", "4"])
    assert pruned.exit_code == 0, pruned.output
    left = counts(engine)
    assert left["messages"] == 3 and left["message_events"] == 6  # day 3 only
    assert left["inbound_messages"] == 3 and left["opt_outs"] == 3
    assert left["contact_events"] == 3
    # Day 3's calls, and days 1 and 2's calls whose recordings are still pending.
    assert left["calls"] == 4 and left["recordings"] == 4
    assert "kept 2 calls whose recordings are still being fetched" in pruned.output
    # Day 3's raw events and those of the calls kept; the straddler's late report is archived
    # but it was also the only thing referring to it, so it went too.
    assert left["raw_events"] == 3 * 5 + 2 + 2
    # Recording files: day 3's stays; days 1 and 2's, now in the archive only, are removed.
    assert "recording files removed (no recording left refers to them): 2" in pruned.output
    assert len([p for p in Path(settings["RECORDINGS_DIR"]).rglob("*") if p.is_file()]) == 1

    # Running it again finds everything gone already.
    again = runner.invoke(args=["archive", "prune", "--before", BEFORE, "--from", out])
    assert again.exit_code == 0, again.output
    assert "already gone" in again.output and counts(engine) == left

    # The import brings back the files of what it restores, whatever the folder holds.
    for path in Path(settings["RECORDINGS_DIR"]).rglob("*"):
        if path.is_file():
            path.unlink()
    restored = runner.invoke(args=["archive", "import", str(archive)])
    assert restored.exit_code == 0, restored.output
    assert snapshot(engine) == everything
    assert "recording files restored: 2" in restored.output
    assert len([p for p in Path(settings["RECORDINGS_DIR"]).rglob("*") if p.is_file()]) == 2

    # A second export of the same period, after all that, gives the same bytes.
    assert (
        runner.invoke(
            args=["archive", "export", "--before", BEFORE, "--out", str(tmp_path / "again")]
        ).exit_code
        == 0
    )
    assert files_of(archive) == files_of(tmp_path / "again" / archive.name)

    # Importing twice changes nothing; new rows get fresh ids past the restored ones.
    twice = runner.invoke(args=["archive", "import", str(archive)])
    assert twice.exit_code == 0 and "already present" in twice.output
    assert snapshot(engine) == everything
    top = max(int(json.loads(r)["id"]) for r in everything["raw_events"])
    with engine.begin() as conn:
        new_id = seeded.raw(conn, CUTOFF + timedelta(days=2))
    assert new_id > top


def test_prune_keeps_what_changed_since_the_export(runner, engine, seeded, tmp_path):
    out = str(tmp_path)
    export(runner, out, BEFORE)
    seeded.late_event("msg-0-0", "read", CUTOFF + timedelta(days=1))
    result = runner.invoke(args=["archive", "prune", "--before", BEFORE, "--from", out])
    assert result.exit_code == 0, result.output
    assert "kept, changed since the export" in result.output and "messages 1" in result.output
    with engine.connect() as conn:
        kept = (
            conn.execute(
                sa.text("SELECT id FROM messages WHERE created_at < :c"),
                {"c": CUTOFF.replace(tzinfo=None) if engine.dialect.name == "sqlite" else CUTOFF},
            )
            .scalars()
            .all()
        )
        events = conn.scalar(sa.text("SELECT count(*) FROM message_events WHERE message_id = 'msg-0-0'"))
        raws = conn.scalar(
            sa.text(
                "SELECT count(*) FROM raw_events r JOIN message_events e ON e.raw_event_id = r.id "
                "WHERE e.message_id = 'msg-0-0'"
            )
        )
    assert kept == ["msg-0-0"]
    assert events == 3 and raws == 3  # the message, its history and the raw events it refers to

    # The next archive takes it, whole.
    export(runner, out, "2026-01-13")
    rows = rows_in(tmp_path / "archive-20260113T000000Z", "messages")
    assert [len(m["events"]) for m in rows if m["id"] == "msg-0-0"] == [3]


def test_prune_refuses_an_archive_that_does_not_verify(runner, engine, seeded, tmp_path):
    out = str(tmp_path)
    export(runner, out, BEFORE)
    before = counts(engine)
    (tmp_path / "archive-20260112T000000Z" / "calls" / "2026-01-10.jsonl.gz").write_bytes(
        b"\x1f\x8bnot really"
    )
    result = runner.invoke(args=["archive", "prune", "--before", BEFORE, "--from", out])
    assert result.exit_code != 0
    assert "calls/2026-01-10.jsonl.gz" in result.output and "nothing was changed" in result.output
    assert counts(engine) == before

    nothing = runner.invoke(args=["archive", "prune", "--before", "2026-01-11", "--from", out])
    assert nothing.exit_code != 0 and "no archive" in nothing.output
    assert counts(engine) == before


class InterruptingDestination(LocalDestination):
    """A folder whose reads stop dead after so many data files, as a killed process would."""

    def __init__(self, root: Path, files: int) -> None:
        super().__init__(root)
        self.left = files

    def open(self, name: str, path: str) -> Any:
        if path.endswith(".jsonl.gz"):
            self.left -= 1
            if self.left < 0:
                raise KeyboardInterrupt
        return super().open(name, path)


def test_an_interrupted_prune_can_be_run_again(engine, seeded, tmp_path, settings):
    dest = LocalDestination(tmp_path)
    export_archive(engine, dest, CUTOFF, recordings_dir=settings["RECORDINGS_DIR"])
    data_files = len(list(tmp_path.rglob("*.jsonl.gz")))
    # Verification reads every data file once; pruning then gets through one and a half files.
    with pytest.raises(KeyboardInterrupt):
        prune(
            engine,
            InterruptingDestination(tmp_path, files=data_files + 1),
            CUTOFF,
            recordings_dir=settings["RECORDINGS_DIR"],
            batch=2,
        )
    partial = counts(engine)
    assert 3 < partial["messages"] < 10  # some batches committed, the rest untouched
    result = prune(engine, dest, CUTOFF, recordings_dir=settings["RECORDINGS_DIR"], batch=2)
    assert result.gone["messages"] > 0
    after = counts(engine)
    assert after["messages"] == 3 and after["raw_events"] == 3 * 5 + 2 + 2


def test_export_leaves_nothing_behind_when_a_recording_file_is_missing(engine, seeded, tmp_path, settings):
    for path in Path(settings["RECORDINGS_DIR"]).rglob("*"):
        if path.is_file():
            path.unlink()
            break
    with pytest.raises(ArchiveError, match="is missing; nothing was archived"):
        export_archive(
            engine, LocalDestination(tmp_path / "out"), CUTOFF, recordings_dir=settings["RECORDINGS_DIR"]
        )
    assert list((tmp_path / "out").iterdir()) == []


def test_export_refuses_a_cutoff_in_the_future(runner, seeded, tmp_path):
    result = runner.invoke(args=["archive", "export", "--before", "2999-01-01", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "in the future" in result.output
    result = runner.invoke(args=["archive", "export", "--before", "last tuesday", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "not a date" in result.output


def test_import_into_an_empty_database_round_trips(engine, seeded, tmp_path, settings):
    everything = snapshot(engine)
    dest = LocalDestination(tmp_path)
    export_archive(engine, dest, DAY1 + timedelta(days=5), recordings_dir=settings["RECORDINGS_DIR"])
    from tests.conftest import empty_tables

    empty_tables(settings["DATABASE_URL"])
    assert sum(counts(engine).values()) == 0
    result = import_archive(
        engine, dest, "archive-20260115T000000Z", recordings_dir=settings["RECORDINGS_DIR"]
    )
    assert result.inserted["raw_events"] == len(everything["raw_events"])
    assert snapshot(engine) == everything


def test_a_missing_archive_is_a_clear_error(runner, tmp_path):
    for args in (["verify", str(tmp_path / "nowhere")], ["import", str(tmp_path / "nowhere")]):
        result = runner.invoke(args=["archive", *args])
        assert result.exit_code != 0
        assert "nowhere: no such archive or folder" in result.output
    empty = runner.invoke(args=["archive", "verify", str(tmp_path)])
    assert empty.exit_code != 0 and "no archive found" in empty.output


# The columns revision 0002 added to tables an archive held before it (and its new table).
ADDED_IN_0002 = {
    "raw_events": {"replays", "replayed_at"},
    "messages": {"mobile_canonical"},
    "inbound_messages": {"from_canonical", "to_canonical"},
    "calls": {"from_canonical", "to_canonical"},
    "opt_outs": {"number_canonical"},
}


def as_made_before_0002(archive: Path) -> None:
    """Rewrite a fresh archive as receiver wrote it at revision 0001: without the columns and the
    table 0002 added, every hash in the manifest recomputed (so it verifies)."""
    from receiver.archive.format import HashingWriter, dumps, gzip_writer

    manifest = manifest_of(archive)
    for path in sorted(manifest["files"]):
        table = path.split("/", 1)[0]
        if table == "contact_events":
            (archive / path).unlink()
            del manifest["files"][path]
        elif table in ADDED_IN_0002 and path.endswith(".jsonl.gz"):
            rows = [
                {k: v for k, v in row.items() if k not in ADDED_IN_0002[table]}
                for row in rows_in_file(archive / path)
            ]
            with open(archive / path, "wb") as raw:
                sink = HashingWriter(raw)
                with gzip_writer(sink) as out:
                    out.write("".join(dumps(row) + "\n" for row in rows).encode())
            manifest["files"][path].update(sha256=sink.sha256.hexdigest(), bytes=sink.size)
    for table, added in ADDED_IN_0002.items():
        for name in added:
            del manifest["columns"][table][name]
    del manifest["columns"]["contact_events"], manifest["counts"]["contact_events"]
    del manifest["selection"]["contact_events"]
    manifest["schema"] = "0001"
    (archive / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n")


def rows_in_file(path: Path) -> list[dict[str, Any]]:
    with open(path, "rb") as stream:
        return list(iter_lines(stream))


def test_an_archive_from_before_canonical_numbers_verifies_prunes_and_imports(
    runner, engine, seeded, tmp_path, settings
):
    everything = snapshot(engine)
    out = tmp_path / "archives"
    export(runner, out, BEFORE)
    archive = out / "archive-20260112T000000Z"
    as_made_before_0002(archive)
    verified = runner.invoke(args=["archive", "verify", str(archive)])
    assert verified.exit_code == 0, verified.output

    # Its rows are today's less the new columns: unchanged, so pruned.
    pruned = runner.invoke(args=["archive", "prune", "--before", BEFORE, "--from", str(out)])
    assert pruned.exit_code == 0, pruned.output
    assert "kept, changed since the export (they go in the next archive): no rows" in pruned.output
    left = counts(engine)
    # Calls: day 3's, and days 1 and 2's whose recordings are still pending.
    assert (left["messages"], left["inbound_messages"], left["opt_outs"], left["calls"]) == (3, 3, 3, 4)
    assert left["contact_events"] == 9  # not in that archive: kept, with their raw events

    # Imported, its rows get the canonical numbers ingest would have given them: all is back.
    restored = runner.invoke(args=["archive", "import", str(archive)])
    assert restored.exit_code == 0, restored.output
    assert snapshot(engine) == everything


def test_prune_keeps_a_call_until_its_recording_is_stored_or_failed(runner, engine, seeded, tmp_path):
    """Deleting a call whose recording is being fetched would end the download: never."""
    at = DAY1 + timedelta(hours=9)
    waiting = {
        state: seeded.call(f"call-{state}", at, None, state)
        for state in ("retrying", "downloading", "fallback")
    }
    failed = seeded.call("call-failed", at, None, "failed")
    out = str(tmp_path)
    export(runner, out, BEFORE)
    pruned = runner.invoke(args=["archive", "prune", "--before", BEFORE, "--from", out])
    assert pruned.exit_code == 0, pruned.output
    # The three above, and the seed's two pending ones.
    assert "kept 5 calls whose recordings are still being fetched" in pruned.output
    with engine.connect() as conn:
        calls = set(conn.scalars(sa.text("SELECT id FROM calls")))
        raws = conn.scalar(sa.text("SELECT count(*) FROM raw_events r JOIN calls c ON c.raw_event_id = r.id"))
        states = dict(conn.execute(sa.text("SELECT call_id, state FROM recordings")).all())
    assert set(waiting.values()) <= calls and failed not in calls
    assert {states[call_id] for call_id in waiting.values()} == {"retrying", "downloading", "fallback"}
    assert raws == len(calls)  # each kept call keeps the raw request it came from

    # Once they are done, the next archive takes them and its prune deletes them.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE recordings SET state = 'failed' WHERE state <> 'stored'"))
    export(runner, out, "2026-01-13")
    again = runner.invoke(args=["archive", "prune", "--before", "2026-01-13", "--from", out])
    assert again.exit_code == 0, again.output
    assert "still being fetched" not in again.output
    with engine.connect() as conn:
        left = set(conn.scalars(sa.text("SELECT id FROM calls")))
    assert not left & (set(waiting.values()) | {failed})


def test_prune_removes_the_recording_files_no_remaining_recording_refers_to(
    runner, engine, seeded, tmp_path, settings
):
    recordings = Path(settings["RECORDINGS_DIR"])
    # The second day's audio again, in a call after the cutoff: its file is still needed.
    seeded.call("call-later", CUTOFF + timedelta(days=1), b"ID3 audio 1" * 100)
    files = {p.name for p in recordings.rglob("*") if p.is_file()}
    assert len(files) == 3  # day 1's audio (two calls), day 2's (two calls), day 3's
    export(runner, str(tmp_path), BEFORE)
    pruned = runner.invoke(args=["archive", "prune", "--before", BEFORE, "--from", str(tmp_path)])
    assert pruned.exit_code == 0, pruned.output
    assert "recording files removed (no recording left refers to them): 1" in pruned.output
    with engine.connect() as conn:
        referred = set(conn.scalars(sa.text("SELECT sha256 FROM recordings WHERE sha256 IS NOT NULL")))
    left = {p.name for p in recordings.rglob("*") if p.is_file()}
    assert left == referred and len(left) == 2
    # Run again: nothing left to remove.
    again = runner.invoke(args=["archive", "prune", "--before", BEFORE, "--from", str(tmp_path)])
    assert "recording files removed (no recording left refers to them): 0" in again.output
