"""CSV export of every list: streamed, every matching row, the flat keys, round-trips through csv."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta

import pytest

from receiver.models import RawState
from tests import factories
from tests.payloads import (
    C2C,
    CONTACT_CREATED,
    CONTACT_UPDATED,
    OBD,
    RCS_INBOUND_MEDIA,
    UNSUBSCRIPTION,
    VMN_INBOUND,
    WHATSAPP_INBOUND,
    channel_status,
    sms,
)


def _rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.data[:500]
    assert response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))


# A text cell a spreadsheet would take for a formula, or one starting with the mark itself, gets a `'`.
MARKED = ("=", "+", "-", "@", "\t", "\r", "'")


def _as_csv(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(MARKED):
        return "'" + value
    return str(value)


def _cells(row: dict[str, str], item: dict) -> dict:
    """A CSV row as comparable to its JSON item: JSON objects and lists are read back."""
    return {k: json.loads(v) if isinstance(item.get(k), dict | list) and v else v for k, v in row.items()}


def _same_as_json(api, path: str, nested: str | None, **params) -> list[dict[str, str]]:
    """The CSV holds the JSON list's rows, in its order, less the nested lists."""
    pages = api(path, query_string=dict(params, limit=1000)).get_json()
    assert pages["next_cursor"] is None
    rows = _rows(api(path, query_string=dict(params, format="csv")))
    expected = [
        {k: v if isinstance(v, dict | list) else _as_csv(v) for k, v in item.items() if k != nested}
        for item in pages["data"]
    ]
    assert [_cells(row, item) for row, item in zip(rows, expected, strict=False)] == expected
    if expected:
        assert list(rows[0]) == [k for k in pages["data"][0] if k != nested]  # the flat keys, in order
    return rows


def test_messages_csv_matches_json(hooks, api):
    hooks.post(sms(id="c:1"))
    hooks.post(sms(id="c:1", status="AWAITING-DLR"))
    hooks.post(sms(id="c:2", custom='quote " comma , newline \n done', mobile="919000000009"))
    hooks.post(channel_status("whatsapp", "read", "c:3", "2024-01-01T10:00:00Z"))
    rows = _same_as_json(api, "/api/v1/messages", "events")
    assert len(rows) == 3
    assert {r["custom"] for r in rows} >= {'quote " comma , newline \n done'}
    assert "events" not in rows[0]


def test_inbound_calls_and_events_csv_match_json(hooks, api):
    for payload in (VMN_INBOUND, WHATSAPP_INBOUND, RCS_INBOUND_MEDIA, OBD, C2C):
        hooks.post(payload)
    hooks.post(b'{"broken": ', headers={"Content-Type": "application/json"})
    inbound = _same_as_json(api, "/api/v1/inbound", None)
    assert json.loads(next(r for r in inbound if r["id"] == "our-message-id-wa")["contact"])[
        "first_name"
    ] == ("user first name")
    assert len(_same_as_json(api, "/api/v1/calls", "recordings")) == 2
    events = _same_as_json(api, "/api/v1/events", None)
    assert len(events) == 6
    quarantined = _same_as_json(api, "/api/v1/events", None, state="quarantined")
    assert len(quarantined) == 1 and json.loads(quarantined[0]["errors"])


def test_opt_outs_recordings_and_contacts_csv_match_json(hooks, api):
    hooks.post(UNSUBSCRIPTION)
    hooks.post(
        dict(UNSUBSCRIPTION, id=2, receiver="+91 98450 12345"),
        path="/hooks/portal/unsubscription?channel=sms",
    )
    hooks.post(OBD)
    hooks.post(C2C)
    hooks.post(CONTACT_CREATED)
    hooks.post(dict(CONTACT_UPDATED, mobile="9845012345"))
    opt_outs = _same_as_json(api, "/api/v1/opt-outs", None)
    assert [row["channel"] for row in opt_outs] == ["sms", ""]
    assert len(_same_as_json(api, "/api/v1/opt-outs", None, number="919845012345")) == 1
    assert len(_same_as_json(api, "/api/v1/recordings", None, state="pending")) == 2
    contacts = _same_as_json(api, "/api/v1/contacts", None)
    assert json.loads(contacts[1]["contact"])["attributes"]["membership"] == "platinum"
    assert len(_same_as_json(api, "/api/v1/contacts", None, number="+91 98450 12345")) == 1


FORMULAS = ['=HYPERLINK("http://x.test","click")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)"]


def test_text_that_a_spreadsheet_would_run_is_marked_as_text(hooks, api):
    """Anyone who can send an SMS writes an inbound message's text; support staff open the export."""
    for index, text in enumerate([*FORMULAS, "'already quoted", "plain = text"]):
        hooks.post({"from": "+919845012345", "to": "919019000000", "text": text, "id": f"in:{index}"})
    hooks.post(sms(id="=1+1", custom="=1+1", mobile="+919845012345"))
    hooks.post(dict(CONTACT_CREATED, first_name="@evil", last_name="-"))
    hooks.post(dict(OBD, billing=-5))

    inbound = {row["id"]: row for row in _rows(api("/api/v1/inbound?format=csv"))}
    for index, text in enumerate(FORMULAS):
        assert inbound[f"in:{index}"]["text"] == "'" + text
        assert inbound[f"in:{index}"]["from"] == "'+919845012345"
    assert inbound[f"in:{len(FORMULAS)}"]["text"] == "''already quoted"  # one `'` off gives it back
    assert inbound[f"in:{len(FORMULAS) + 1}"]["text"] == "plain = text"
    (message,) = _rows(api("/api/v1/messages?format=csv"))
    assert (message["id"], message["custom"], message["mobile"]) == ("'=1+1", "'=1+1", "'+919845012345")
    assert message["created_at"][0].isdigit()  # times are not text cells
    (contact,) = _rows(api("/api/v1/contacts?format=csv"))
    assert (contact["first_name"], contact["last_name"]) == ("'@evil", "'-")
    (call,) = _rows(api("/api/v1/calls?format=csv"))
    assert call["billing"] == "-5"  # a number stays a number
    # The JSON shows every value as stored.
    assert api("/api/v1/messages").get_json()["data"][0]["custom"] == "=1+1"


def test_accept_header_asks_for_csv_too(hooks, api):
    hooks.post(sms(id="h:1"))
    by_header = api("/api/v1/messages", headers={"Accept": "text/csv"})
    by_param = api("/api/v1/messages?format=csv")
    assert _rows(by_header) == _rows(by_param)
    assert "attachment" in by_header.headers["Content-Disposition"]
    # A browser's Accept (*/*) and an explicit format=json get JSON.
    assert api("/api/v1/messages", headers={"Accept": "text/html,*/*;q=0.8"}).is_json
    assert api("/api/v1/messages?format=json", headers={"Accept": "text/csv"}).is_json


def test_export_has_every_matching_row_streamed(app, api):
    factories.messages(app, 2600, step=timedelta(milliseconds=1), mobile="919000000001")
    factories.messages(app, 40, mobile="919000000002")
    response = api("/api/v1/messages?format=csv&mobile=919000000001")
    assert response.is_streamed
    rows = _rows(response)
    assert len(rows) == 2600
    assert len({r["id"] for r in rows}) == 2600
    times = [datetime.fromisoformat(r["created_at"].replace("Z", "+00:00")) for r in rows]
    assert times == sorted(times, reverse=True)
    empty = _rows(api("/api/v1/messages?format=csv&mobile=919000000003"))
    assert empty == []
    header = api("/api/v1/messages?format=csv&mobile=919000000003").get_data(as_text=True)
    assert header.startswith("id,source,channel,mobile,")


@pytest.mark.parametrize("extra", ["limit=10", "cursor=abc"])
def test_limit_or_cursor_with_csv_is_422(api, extra):
    response = api(f"/api/v1/messages?format=csv&{extra}")
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == [extra.split("=")[0]]
    assert api(f"/api/v1/events?{extra}", headers={"Accept": "text/csv"}).status_code == 422


def test_bad_filter_with_csv_is_still_422(api):
    response = api("/api/v1/calls?format=csv&since=never")
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["since"]


def test_unicode_and_binary_bodies_survive(app, api):
    factories.raw_event(app, body='नमस्ते, "hi"\n'.encode(), state=RawState.pending)
    factories.raw_event(
        app, body=b"\xff\xfe\x00binary", state=RawState.quarantined, errors={"_body": ["bad"]}
    )
    rows = _rows(api("/api/v1/events?format=csv"))
    assert [r["state"] for r in rows] == ["quarantined", "pending"]
    assert json.loads(rows[0]["errors"]) == {"_body": ["bad"]}


def test_export_abandoned_midway_gives_its_connection_back(app, api):
    factories.messages(app, 3000)
    for _ in range(20):  # more exports than the pool has connections, were any kept
        response = api("/api/v1/messages?format=csv", buffered=False)
        assert next(iter(response.response)).startswith(b"id,source,")
        response.close()
    assert len(api("/api/v1/messages?limit=5").get_json()["data"]) == 5
    assert len(_rows(api("/api/v1/messages?format=csv"))) == 3000
