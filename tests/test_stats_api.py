"""GET /api/v1/stats/messages and /api/v1/stats/calls: answers, CSV, window rules, errors."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import Flask

from receiver.models import Message, Recording, RecordingState, Status

from .factories import messages
from .payloads import C2C, OBD

DAY = datetime(2026, 2, 10, tzinfo=UTC)


def _set(app: Flask, ids: list[str], **values: Any) -> None:
    with app.extensions["receiver.db"].new_session() as session, session.begin():
        session.execute(sa.update(Message).where(Message.id.in_(ids)).values(**values))


def test_counts_rates_credits_and_delivery_times_by_operator(app: Flask, api: Any) -> None:
    delivered = messages(app, 3, start=DAY, status=Status.delivered, provider_status="DELIVRD")
    failed = messages(app, 1, start=DAY, status=Status.failed, provider_status="UNDELIV")
    pending = messages(app, 1, start=DAY, status=Status.sent, provider_status="sent")
    _set(app, delivered + failed + pending, operator="Airtel", credits=Decimal("0.2500"), units=1)
    for seconds, message_id in zip([4, 10, 30], delivered, strict=True):
        _set(app, [message_id], submitted_at=DAY, delivered_at=DAY + timedelta(seconds=seconds))
    other = messages(app, 2, start=DAY, status=Status.rejected, provider_status="DNDNUMB")
    _set(app, other, operator="Jio")

    answer = api("/api/v1/stats/messages?since=2026-02-10&until=2026-02-11&group_by=operator")
    assert answer.status_code == 200, answer.get_json()
    rows = answer.get_json()["data"]
    assert rows[0] == {
        "operator": "Airtel",
        "total": 5,
        "accepted": 0,
        "sent": 1,
        "delivered": 3,
        "read": 0,
        "failed": 1,
        "rejected": 0,
        "expired": 0,
        "deleted": 0,
        "unknown": 0,
        "delivery_rate": 0.75,
        "credits": "1.2500",
        "units": 5,
        "delivery_seconds_p50": 10.0,
        "delivery_seconds_p90": 26.0,
    }
    assert rows[1]["operator"] == "Jio"
    assert (rows[1]["rejected"], rows[1]["delivery_rate"], rows[1]["delivery_seconds_p50"]) == (2, 0.0, None)
    assert rows[1]["credits"] == "0.0000"


def test_which_error_codes_rose_by_day_and_provider_status(app: Flask, api: Any) -> None:
    messages(app, 2, start=DAY, status=Status.rejected, provider_status="DLT-TEMPLATE")
    messages(app, 5, start=DAY + timedelta(days=1), status=Status.rejected, provider_status="DLT-TEMPLATE")
    answer = api("/api/v1/stats/messages?since=2026-02-10&until=2026-02-12&group_by=day,provider_status")
    rows = [(r["day"], r["provider_status"], r["total"]) for r in answer.get_json()["data"]]
    assert rows == [("2026-02-10", "DLT-TEMPLATE", 2), ("2026-02-11", "DLT-TEMPLATE", 5)]


def test_days_and_hours_in_the_zone_asked_for(app: Flask, api: Any) -> None:
    messages(app, 1, start=DAY + timedelta(hours=19))  # 00:30 the next day in India
    answer = api("/api/v1/stats/messages?since=2026-02-10&until=2026-02-11&group_by=day,hour&tz=Asia/Kolkata")
    row = answer.get_json()["data"][0]
    assert (row["day"], row["hour"]) == ("2026-02-11", "2026-02-11T00:00:00+05:30")
    answer = api("/api/v1/stats/messages?since=2026-02-10&until=2026-02-11&group_by=day")
    assert answer.get_json()["data"][0]["day"] == "2026-02-10"


def test_the_window_is_the_last_seven_days_by_default(app: Flask, api: Any) -> None:
    now = datetime.now(UTC)
    messages(app, 1, start=now - timedelta(days=8))
    messages(app, 2, start=now - timedelta(days=6))
    assert api("/api/v1/stats/messages").get_json()["data"] == [
        {**api("/api/v1/stats/messages").get_json()["data"][0], "total": 2}
    ]


def test_group_by_repeated_or_comma_separated(app: Flask, api: Any) -> None:
    messages(app, 1, start=DAY)
    window = "since=2026-02-10&until=2026-02-11"
    for query in ["group_by=day,status", "group_by=day&group_by=status"]:
        rows = api(f"/api/v1/stats/messages?{window}&{query}").get_json()["data"]
        assert [(row["day"], row["status"]) for row in rows] == [("2026-02-10", "delivered")], query


def test_filters(app: Flask, api: Any) -> None:
    ids = messages(app, 3, start=DAY)
    _set(app, ids[:1], sender="MOBTXT", service="otp", channel="whatsapp")
    for query, total in [
        ("sender=MOBTXT", 1),
        ("service=otp", 1),
        ("channel=sms", 2),
        ("source=other", None),
    ]:
        rows = api(f"/api/v1/stats/messages?since=2026-02-10&until=2026-02-11&{query}").get_json()["data"]
        assert (rows[0]["total"] if rows else None) == total, query


def test_csv_has_a_header_row_and_marks_formula_text(app: Flask, api: Any) -> None:
    ids = messages(app, 2, start=DAY)
    _set(app, ids, operator="=HYPERLINK(1)")
    answer = api(
        "/api/v1/stats/messages?since=2026-02-10&until=2026-02-11&group_by=operator,status&format=csv"
    )
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    table = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    assert table[0][:4] == ["operator", "status", "total", "accepted"]
    assert table[0][-2:] == ["delivery_seconds_p50", "delivery_seconds_p90"]
    assert table[1][:3] == ["'=HYPERLINK(1)", "delivered", "2"]
    by_accept = api(
        "/api/v1/stats/messages?since=2026-02-10&until=2026-02-11&group_by=operator,status",
        headers={"Accept": "text/csv"},
    )
    assert by_accept.get_data() == answer.get_data()


def test_refusals_name_the_parameter(app: Flask, api: Any, client: Any) -> None:
    cases = {
        "since=2025-01-01&until=2026-02-10": "since",  # over 400 days
        "since=2026-02-10&until=2026-02-10": "until",
        "tz=Mars/Olympus": "tz",
        "tz=../../etc/passwd": "tz",
        "group_by=day,mobile": "group_by",
        "group_by=day,,status": "group_by",
        "since=yesterday": "since",
        "since=0001-01-01": "since",
        "until=9999-12-31T23:59:59": "until",
        "channel=fax": "channel",
        "limit=5": "limit",
    }
    for query, field in cases.items():
        answer = api(f"/api/v1/stats/messages?{query}")
        assert answer.status_code == 422, query
        body = answer.get_json()
        assert body["status"] == "ERROR" and field in body["errors"], (query, body)
    assert client.get("/api/v1/stats/messages").status_code == 401
    assert api("/api/v1/stats/calls?group_by=operator").status_code == 422


def test_calls_answered_durations_billing_and_recordings(app: Flask, api: Any, hooks: Any) -> None:
    for payload in [
        OBD,
        {**OBD, "mid": "m-2", "status": "NOANSWER", "duration": "0", "recording_url": None},
        C2C,
        {**C2C, "start_at": "2021-04-10 09:00:00", "unixtime": "1", "hangup_by": "agent", "billing": "7"},
    ]:
        assert hooks.post({k: v for k, v in payload.items() if v is not None}).status_code == 200
    with app.extensions["receiver.db"].new_session() as session, session.begin():
        first, second, _third = session.scalars(sa.select(Recording.id).order_by(Recording.id)).all()
        session.execute(sa.update(Recording).where(Recording.id == first).values(state=RecordingState.stored))
        session.execute(
            sa.update(Recording).where(Recording.id == second).values(state=RecordingState.failed)
        )

    answer = api("/api/v1/stats/calls?since=2021-04-09&until=2021-04-11&group_by=day&tz=Asia/Kolkata")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["data"] == [
        {
            "day": "2021-04-09",
            "calls": 3,
            "answered": 2,
            "duration_seconds": 46,
            "duration_seconds_avg": 46 / 3,
            "billing": 23,
            "recordings_stored": 1,
            "recordings_waiting": 0,
            "recordings_failed": 1,
        },
        {
            "day": "2021-04-10",
            "calls": 1,
            "answered": 1,
            "duration_seconds": 23,
            "duration_seconds_avg": 23.0,
            "billing": 7,
            "recordings_stored": 0,
            "recordings_waiting": 1,
            "recordings_failed": 0,
        },
    ]
    whole = api("/api/v1/stats/calls?since=2021-04-09&until=2021-04-11")  # no grouping: one row
    assert whole.status_code == 200, whole.get_json()
    assert whole.get_json()["data"] == [
        {
            "calls": 4,
            "answered": 3,
            "duration_seconds": 69,
            "duration_seconds_avg": 69 / 4,
            "billing": 30,
            "recordings_stored": 1,
            "recordings_waiting": 1,
            "recordings_failed": 1,
        }
    ]
    by_hangup = api("/api/v1/stats/calls?since=2021-04-09&until=2021-04-11&group_by=hangup_by&format=csv")
    lines = by_hangup.get_data(as_text=True).splitlines()
    assert lines[0].startswith("hangup_by,calls,answered")
    assert lines[1:] == ["agent,1,1,23,23.0,7,0,1,0", "caller,1,1,23,23.0,23,0,0,1", ",2,1,23,11.5,0,1,0,0"]


def test_the_openapi_document_describes_both(app: Flask, client: Any) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    for path in ("/api/v1/stats/messages", "/api/v1/stats/calls"):
        operation = document["paths"][path]["get"]
        assert {p["name"] for p in operation["parameters"]} >= {"since", "until", "group_by", "tz", "format"}
        assert "text/csv" in operation["responses"]["200"]["content"]
    row = document["components"]["schemas"]["MessageStatsRow"]["properties"]
    assert {"delivery_rate", "delivery_seconds_p90", "credits", "operator", "rejected"} <= row.keys()
