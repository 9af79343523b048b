"""Canonical statuses (SPEC §4) and the current status under late, repeated and out-of-order reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from receiver.ingest.statuses import canonical, supersedes
from receiver.models import Status
from tests.payloads import channel_status, sms

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "channel", "expected"),
    [
        ("AWAITING-DLR", "sms", Status.accepted),
        ("queued", "whatsapp", Status.accepted),
        ("sent", "whatsapp", Status.sent),
        ("dispatched", "whatsapp", Status.sent),
        ("", "sms", Status.sent),
        ("DELIVRD", "sms", Status.delivered),
        ("delivered", "rcs", Status.delivered),
        ("read", "viber", Status.read),
        ("UNDELIV", "sms", Status.failed),
        ("ABSENT-SUB", "sms", Status.failed),
        ("MOB-OFF", "sms", Status.failed),
        ("SOME-NEW-ERR", "sms", Status.failed),
        ("offline", "rcs", Status.failed),
        ("failed", "whatsapp", Status.failed),
        ("REJECTED", "sms", Status.rejected),
        ("DNDNUMB", "sms", Status.rejected),
        ("INV-NUMBER", "sms", Status.rejected),
        ("DLT-TM-INACTIVE", "sms", Status.rejected),
        ("NOT-OPTIN", "sms", Status.rejected),
        ("blacklist", "rcs", Status.rejected),
        ("rejected", "rcs", Status.rejected),
        ("EXPIRED", "sms", Status.expired),
        ("expired", "viber", Status.expired),
        ("deleted", "whatsapp", Status.deleted),
        ("TIMEOUT-DLR", "sms", Status.unknown),
        ("something else", "whatsapp", Status.unknown),
        ("weird status!", "sms", Status.unknown),
    ],
)
def test_canonical(value, channel, expected):
    assert canonical(value, channel=channel) == expected


def test_no_final_state_regresses():
    assert not supersedes(Status.sent, T0 + timedelta(hours=1), Status.delivered, T0)
    assert not supersedes(Status.accepted, None, Status.failed, T0)


def test_read_outranks_delivered_whatever_the_order():
    assert supersedes(Status.read, T0, Status.delivered, T0 + timedelta(hours=1))
    assert not supersedes(Status.delivered, T0 + timedelta(hours=1), Status.read, T0)


def test_later_final_state_wins_by_provider_time():
    assert supersedes(Status.delivered, T0 + timedelta(minutes=5), Status.failed, T0)
    assert not supersedes(Status.failed, T0, Status.delivered, T0 + timedelta(minutes=5))


def test_non_final_progress():
    assert supersedes(Status.sent, None, Status.accepted, None)
    assert not supersedes(Status.accepted, None, Status.sent, None)
    assert supersedes(Status.delivered, None, Status.sent, T0)


def _status(api, message_id):
    return api(f"/api/v1/messages/{message_id}").get_json()


def test_out_of_order_sms_reports(hooks, api):
    """DELIVRD arrives before AWAITING-DLR: the message stays delivered, history has both."""
    assert hooks.post(sms(id="o:1", status="DELIVRD")).status_code == 200
    late = sms(id="o:1", status="AWAITING-DLR", deliv_at=None, deliv_time=None)
    assert hooks.post(late).get_json()["message"] == "stored"
    message = _status(api, "o:1")
    assert (message["status"], message["provider_status"]) == ("delivered", "DELIVRD")
    assert [e["provider_status"] for e in message["events"]] == ["AWAITING-DLR", "DELIVRD"]


def test_whatsapp_read_before_delivered(hooks, api):
    hooks.post(channel_status("whatsapp", "read", "wa:1", "2024-01-01T10:05:00Z"))
    hooks.post(channel_status("whatsapp", "delivered", "wa:1", "2024-01-01T10:01:00Z"))
    hooks.post(channel_status("whatsapp", "sent", "wa:1", "2024-01-01T10:00:00Z"))
    message = _status(api, "wa:1")
    assert message["status"] == "read"
    assert [e["status"] for e in message["events"]] == ["sent", "delivered", "read"]
    assert message["read_at"] == "2024-01-01T10:05:00Z"
    assert message["delivered_at"] is not None


def test_later_failure_after_earlier_delivery_by_provider_time(hooks, api):
    hooks.post(channel_status("rcs", "failed", "r:1", "2024-01-01T10:00:00Z"))
    hooks.post(channel_status("rcs", "delivered", "r:1", "2024-01-01T10:03:00Z"))
    assert _status(api, "r:1")["status"] == "delivered"
    hooks.post(channel_status("rcs", "expired", "r:2", "2024-01-01T10:03:00Z"))
    hooks.post(channel_status("rcs", "failed", "r:2", "2024-01-01T10:00:00Z"))
    assert _status(api, "r:2")["status"] == "expired"


def test_repeated_status_is_one_event(hooks, api, app):
    hooks.post(channel_status("viber", "delivered", "v:1", "2024-01-01T10:00:00Z"))
    again = hooks.post(channel_status("viber", "delivered", "v:1", "2024-01-01T10:00:09Z"))
    assert again.get_json()["message"] == "duplicate"
    assert len(_status(api, "v:1")["events"]) == 1


def test_two_sources_report_one_message(hooks, app, client, api):
    from receiver.sources import add_source

    with app.extensions["receiver.db"].new_session() as session:
        other = add_source(session, "backup", secret="backup-secret-123").secret
    hooks.post(sms(id="two:1", status="AWAITING-DLR", deliv_at=None, deliv_time=None))
    client.post("/hooks/backup", json=sms(id="two:1"), headers={"Authorization": f"Bearer {other}"})
    message = _status(api, "two:1")
    assert message["source"] == "portal"
    assert [(e["source"], e["status"]) for e in message["events"]] == [
        ("portal", "accepted"),
        ("backup", "delivered"),
    ]
    assert message["status"] == "delivered"
