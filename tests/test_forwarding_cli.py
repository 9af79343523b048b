"""`receiver destinations`: the secret shown once, the URL rules, list, pause, resume, remove."""

from __future__ import annotations

import base64

import pytest

from receiver import fetcher
from receiver.forwarding.destinations import url_policy

LOCAL = {"DOWNLOAD_ALLOW_HTTP": True, "DOWNLOAD_ALLOW_PRIVATE": True}


@pytest.fixture
def local(settings):
    settings.update(LOCAL)
    return settings


def test_add_prints_the_secret_once_on_its_last_line_and_list_shows_the_destination(local, runner):
    added = runner.invoke(
        args=["destinations", "add", "crm", "--url", "http://127.0.0.1:9/hook", "--events", "inbound,opt_out"]
    )
    assert added.exit_code == 0, added.output
    secret = added.output.splitlines()[-1]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    listed = runner.invoke(args=["destinations", "list"])
    assert listed.exit_code == 0
    assert "crm  http://127.0.0.1:9/hook  inbound,opt_out  active  backlog 0" in listed.output
    assert secret not in listed.output
    assert runner.invoke(args=["destinations", "pause", "crm"]).exit_code == 0
    assert "paused (paused by hand)" in runner.invoke(args=["destinations", "list"]).output
    assert runner.invoke(args=["destinations", "resume", "crm"]).exit_code == 0
    assert "  active  " in runner.invoke(args=["destinations", "list"]).output
    again = runner.invoke(args=["destinations", "add", "crm", "--url", "http://127.0.0.1:9/other"])
    assert again.exit_code == 1 and "exists already" in again.output
    assert runner.invoke(args=["destinations", "remove", "crm"]).exit_code == 0
    assert runner.invoke(args=["destinations", "list"]).output.strip() == "no destinations"
    gone = runner.invoke(args=["destinations", "pause", "crm"])
    assert gone.exit_code == 1 and "no destination 'crm'" in gone.output


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com/hook", "scheme 'http' refused"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://169.254.169.254/latest", "metadata"),
        ("ftp://example.com/", "scheme"),
    ],
)
def test_destination_urls_follow_the_download_rules(runner, url, why):
    answer = runner.invoke(args=["destinations", "add", "x", "--url", url])
    assert answer.exit_code == 1
    assert "URL refused" in answer.output and why in answer.output
    assert "whsec_" not in answer.output


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/",
        "http://[::ffff:169.254.169.254]/",
        "http://100.100.100.200/",
    ],
)
def test_cloud_metadata_addresses_are_refused_even_when_private_addresses_are_allowed(local, runner, url):
    answer = runner.invoke(args=["destinations", "add", "x", "--url", url])
    assert answer.exit_code == 1 and "metadata" in answer.output
    # Downloads go by the same guard, with the same settings.
    with pytest.raises(fetcher.Refused, match="metadata"):
        fetcher.check_reachable(url, url_policy({**local, "FORWARD_TIMEOUT": 1, "DOWNLOAD_CA_BUNDLE": None}))


def test_unknown_event_types_and_bad_names_are_refused(local, runner):
    bad_type = runner.invoke(
        args=["destinations", "add", "x", "--url", "http://127.0.0.1:9/", "--events", "sms"]
    )
    assert bad_type.exit_code == 1 and "unknown event type sms" in bad_type.output
    bad_name = runner.invoke(args=["destinations", "add", "Not Ok", "--url", "http://127.0.0.1:9/"])
    assert bad_name.exit_code == 1 and "a name is" in bad_name.output


def test_rotate_gives_a_new_secret_and_replay_needs_a_time(local, runner):
    first = runner.invoke(
        args=["destinations", "add", "crm", "--url", "http://127.0.0.1:9/"]
    ).output.splitlines()[-1]
    rotated = runner.invoke(args=["destinations", "rotate", "crm"])
    assert rotated.exit_code == 0
    assert rotated.output.splitlines()[-1].startswith("whsec_") and first not in rotated.output
    bad = runner.invoke(args=["destinations", "replay", "crm", "--since", "yesterday"])
    assert bad.exit_code == 2 and "not an ISO 8601 time" in bad.output
    # In UTC this is before the year 1: a line saying so, not a traceback.
    early = runner.invoke(args=["destinations", "replay", "crm", "--since", "0001-01-01T00:00:00+14:00"])
    assert early.exit_code == 2 and "not an ISO 8601 time" in early.output
    ok = runner.invoke(args=["destinations", "replay", "crm", "--since", "2026-01-01"])
    assert ok.exit_code == 0 and "0 changes queued again" in ok.output


def test_signatures_are_the_reference_algorithms_by_either_secret_during_a_rotation():
    from datetime import UTC, datetime

    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    from receiver.forwarding import signing

    old, new, other = signing.new_secret(), signing.new_secret(), signing.new_secret()
    body, stamp = b'{"type":"inbound","data":{"text":"h\\u00e9"}}', int(datetime.now(UTC).timestamp())
    when = datetime.fromtimestamp(stamp, UTC)
    assert signing.sign(new, "chg_7", stamp, body) == Webhook(new).sign("chg_7", when, body.decode())
    headers = signing.headers([new, old], "chg_7", stamp, body)
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers) == {"type": "inbound", "data": {"text": "hé"}}
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)
    with pytest.raises(WebhookVerificationError):  # the body is what is signed
        Webhook(new).verify(body.replace(b"inbound", b"call"), headers)
