"""Archives in an S3-compatible bucket, against moto's server on 127.0.0.1."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.archive_data import counts, seed, snapshot

BEFORE = "2026-01-12"
NAME = "archive-20260112T000000Z"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials for the fake server only; nothing real is reachable from here."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def settings(settings: dict[str, Any], s3_endpoint: str, aws: None) -> dict[str, Any]:
    return {**settings, "ARCHIVE_S3_ENDPOINT_URL": s3_endpoint, "ARCHIVE_S3_RETAIN_DAYS": 30}


@pytest.fixture
def s3(s3_endpoint: str, aws: None) -> Any:
    return boto3.client("s3", endpoint_url=s3_endpoint)


def new_bucket(s3: Any, *, lock: bool) -> str:
    name = f"archive-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)
    return name


@pytest.fixture
def seeded(app: Any, settings: dict[str, Any]) -> Any:
    return seed(app.extensions["receiver.db"].engine, Path(settings["RECORDINGS_DIR"]))


def keys(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_export_to_a_locked_bucket_retains_every_object_and_matches_a_local_export(
    runner, s3, seeded, tmp_path
):
    bucket = new_bucket(s3, lock=True)
    result = runner.invoke(args=["archive", "export", "--before", BEFORE, "--out", f"s3://{bucket}/receiver"])
    assert result.exit_code == 0, result.output
    local = runner.invoke(args=["archive", "export", "--before", BEFORE, "--out", str(tmp_path)])
    assert local.exit_code == 0, local.output

    stored = keys(s3, bucket)
    expected = sorted(
        f"receiver/{NAME}/{p.relative_to(tmp_path / NAME).as_posix()}"
        for p in (tmp_path / NAME).rglob("*")
        if p.is_file()
    )
    assert stored == expected
    for key in stored:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert body == (tmp_path / NAME / key.split("/", 2)[2]).read_bytes()
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC)

    verified = runner.invoke(args=["archive", "verify", f"s3://{bucket}/receiver"])
    assert verified.exit_code == 0, verified.output
    one = runner.invoke(args=["archive", "verify", f"s3://{bucket}/receiver/{NAME}"])
    assert one.exit_code == 0, one.output


def test_an_unlocked_bucket_works_without_retention(runner, s3, seeded):
    bucket = new_bucket(s3, lock=False)
    result = runner.invoke(args=["archive", "export", "--before", BEFORE, "--out", f"s3://{bucket}"])
    assert result.exit_code == 0, result.output
    key = f"{NAME}/manifest.json"
    assert "ObjectLockMode" not in s3.head_object(Bucket=bucket, Key=key)
    assert runner.invoke(args=["archive", "verify", f"s3://{bucket}"]).exit_code == 0


def test_verify_names_a_changed_or_extra_object(runner, s3, seeded):
    bucket = new_bucket(s3, lock=False)
    out = f"s3://{bucket}/x"
    assert runner.invoke(args=["archive", "export", "--before", BEFORE, "--out", out]).exit_code == 0
    s3.put_object(Bucket=bucket, Key=f"x/{NAME}/opt_outs/2026-01-10.jsonl.gz", Body=b"\x1f\x8b\x08 tampered")
    s3.put_object(Bucket=bucket, Key=f"x/{NAME}/extra.bin", Body=b"?")
    result = runner.invoke(args=["archive", "verify", out])
    assert result.exit_code != 0
    assert "opt_outs/2026-01-10.jsonl.gz" in result.output
    assert "extra.bin: extra file" in result.output


def test_prune_and_import_from_a_bucket_round_trip(runner, app, s3, seeded):
    engine = app.extensions["receiver.db"].engine
    everything = snapshot(engine)
    bucket = new_bucket(s3, lock=True)
    out = f"s3://{bucket}/archives"
    assert runner.invoke(args=["archive", "export", "--before", BEFORE, "--out", out]).exit_code == 0
    pruned = runner.invoke(args=["archive", "prune", "--before", BEFORE, "--from", out])
    assert pruned.exit_code == 0, pruned.output
    assert counts(engine)["messages"] == 3
    restored = runner.invoke(args=["archive", "import", f"{out}/{NAME}"])
    assert restored.exit_code == 0, restored.output
    assert snapshot(engine) == everything


def test_an_unreachable_bucket_is_a_clear_error(runner, seeded, s3):
    result = runner.invoke(
        args=["archive", "export", "--before", BEFORE, "--out", "s3://no-such-bucket-here/x"]
    )
    assert result.exit_code != 0
    assert "no-such-bucket-here" in result.output and "NoSuchBucket" in result.output
