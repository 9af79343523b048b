"""`receiver sources` and `receiver apikeys`: secrets printed once, alone on the last line."""

from __future__ import annotations

import json

import pytest

from receiver.models import RawState
from tests import factories
from tests.conftest import row_counts
from tests.payloads import sms


def last_line(result) -> str:
    return result.output.strip().splitlines()[-1]


def post(client, secret, name="shop", **payload):
    return client.post(f"/hooks/{name}", json=sms(**payload), headers={"Authorization": f"Bearer {secret}"})


def test_add_generates_a_secret_and_prints_the_callback_url(runner, client, app):
    result = runner.invoke(args=["sources", "add", "shop"])
    assert result.exit_code == 0, result.output
    secret = last_line(result)
    assert len(secret) >= 32
    assert "http://testserver/hooks/shop" in result.output
    assert post(client, secret, id="cli:1").status_code == 200
    listing = runner.invoke(args=["sources", "list"])
    assert "shop" in listing.output
    assert secret not in listing.output


def test_add_with_given_secret_and_keys(runner, client):
    result = runner.invoke(
        args=[
            "sources",
            "add",
            "given",
            "--secret",
            "given-secret-1",
            "--validation-key",
            "v-key",
            "--signing-key",
            "k",
        ]
    )
    assert result.exit_code == 0, result.output
    assert last_line(result) == "given-secret-1"
    assert "validation key, signing key" in runner.invoke(args=["sources", "list"]).output


def test_add_refuses_a_taken_or_invalid_name(runner):
    assert runner.invoke(args=["sources", "add", "shop"]).exit_code == 0
    taken = runner.invoke(args=["sources", "add", "shop"])
    assert taken.exit_code != 0
    assert "exists already" in taken.output
    invalid = runner.invoke(args=["sources", "add", "Bad Name!"])
    assert invalid.exit_code != 0
    assert "invalid name" in invalid.output


def test_rotate_keeps_the_old_secret_for_the_grace_period(runner, client):
    old = last_line(runner.invoke(args=["sources", "add", "shop"]))
    result = runner.invoke(args=["sources", "rotate", "shop"])
    assert result.exit_code == 0, result.output
    new = last_line(result)
    assert new != old
    assert post(client, new, id="rot:1").status_code == 200
    assert post(client, old, id="rot:2").status_code == 200
    listing = runner.invoke(args=["sources", "list"]).output
    assert "previous secret valid until" in listing


def test_rotate_with_no_grace_retires_the_old_secret(runner, client):
    old = last_line(runner.invoke(args=["sources", "add", "shop"]))
    new = last_line(runner.invoke(args=["sources", "rotate", "shop", "--grace-hours", "0"]))
    assert post(client, old, id="rot:3").status_code == 401
    assert post(client, new, id="rot:4").status_code == 200
    assert runner.invoke(args=["sources", "rotate", "nobody"]).exit_code != 0


@pytest.mark.parametrize("hours", ["-5", "nan", "inf", "1e12", "8761"])
def test_rotate_refuses_a_grace_period_it_cannot_keep(runner, client, hours):
    old = last_line(runner.invoke(args=["sources", "add", "shop"]))
    result = runner.invoke(args=["sources", "rotate", "shop", f"--grace-hours={hours}"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: a grace period is 0 to 8760 hours, not {float(hours):g}"
    ]
    assert post(client, old, id="grace:1").status_code == 200  # not rotated


def test_rotate_says_when_the_old_secret_stops(runner):
    runner.invoke(args=["sources", "add", "shop"])
    now = runner.invoke(args=["sources", "rotate", "shop", "--grace-hours", "0"]).output
    assert "the old one stops working now" in now
    later = runner.invoke(args=["sources", "rotate", "shop", "--grace-hours", "8760"]).output
    assert "the old one works for 8760 more hours" in later


def test_remove_refuses_webhooks_and_keeps_data(runner, client, app, api):
    secret = last_line(runner.invoke(args=["sources", "add", "shop"]))
    assert post(client, secret, id="rm:1").status_code == 200
    assert runner.invoke(args=["sources", "remove", "shop"]).exit_code == 0
    assert post(client, secret, id="rm:2").status_code == 404
    assert row_counts(app)["messages"] == 1
    assert api("/api/v1/messages/rm:1").get_json()["source"] == "shop"
    assert runner.invoke(args=["sources", "remove", "shop"]).exit_code != 0


def test_apikeys_create_and_revoke(runner, client):
    result = runner.invoke(args=["apikeys", "create", "support"])
    assert result.exit_code == 0, result.output
    key = last_line(result)
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/messages/none", headers=headers).status_code == 404
    assert "support" in runner.invoke(args=["apikeys", "list"]).output
    assert runner.invoke(args=["apikeys", "revoke", "support"]).exit_code == 0
    revoked = client.get("/api/v1/messages/none", headers=headers)
    assert revoked.status_code == 401
    assert revoked.get_json()["status"] == "ERROR"
    assert client.get("/api/v1/messages/none").status_code == 401
    assert runner.invoke(args=["apikeys", "revoke", "support"]).exit_code != 0


def _replay_something(app, client, key):
    raw_id = factories.raw_event(app, body=json.dumps(sms(id="scope:1")).encode(), state=RawState.pending)
    return client.post(f"/api/v1/events/{raw_id}/replay", headers={"Authorization": f"Bearer {key}"})


def test_apikeys_scope_read_by_default_operate_may_replay(app, runner, client):
    read = runner.invoke(args=["apikeys", "create", "support"])
    assert read.exit_code == 0, read.output
    assert "scope read" in read.output
    refused = _replay_something(app, client, last_line(read))
    assert refused.status_code == 403
    body = refused.get_json()
    assert (body["status"], body["code"]) == ("ERROR", 403) and "operate" in body["message"]
    assert row_counts(app)["messages"] == 0  # nothing was replayed

    operate = runner.invoke(args=["apikeys", "create", "ops", "--scope", "operate"])
    assert operate.exit_code == 0, operate.output
    key = last_line(operate)
    assert client.get("/api/v1/messages", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert _replay_something(app, client, key).status_code == 200
    assert row_counts(app)["messages"] == 1
    listed = runner.invoke(args=["apikeys", "list"]).output
    assert "support\tread" in listed and "ops\toperate" in listed
    assert runner.invoke(args=["apikeys", "create", "x", "--scope", "admin"]).exit_code != 0


def test_a_revoked_key_name_can_be_reused(runner, client):
    first = last_line(runner.invoke(args=["apikeys", "create", "support"]))
    taken = runner.invoke(args=["apikeys", "create", "support"])
    assert taken.exit_code != 0 and "exists already" in taken.output
    assert runner.invoke(args=["apikeys", "revoke", "support"]).exit_code == 0
    again = runner.invoke(args=["apikeys", "create", "support"])
    assert again.exit_code == 0, again.output
    second = last_line(again)
    assert client.get("/api/v1/messages", headers={"Authorization": f"Bearer {first}"}).status_code == 401
    assert client.get("/api/v1/messages", headers={"Authorization": f"Bearer {second}"}).status_code == 200
    listed = runner.invoke(args=["apikeys", "list"]).output.splitlines()
    assert [line.split("\t")[-1].split(" ")[0] for line in listed] == ["revoked", "active"]
    assert runner.invoke(args=["apikeys", "revoke", "support"]).exit_code == 0
    assert client.get("/api/v1/messages", headers={"Authorization": f"Bearer {second}"}).status_code == 401


def test_db_upgrade_is_idempotent(runner):
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "head" in result.output


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json()["message"] == "up"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["revision"]
