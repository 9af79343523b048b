"""Support search: every number filter finds every spelling of a number; messages by the provider's
status, operator, region and sender; the opt-out list and check; recordings by state; contacts."""

from __future__ import annotations

import copy
import re

import pytest

from receiver.models import Recording, RecordingState
from tests.payloads import (
    C2C,
    CONTACT_CREATED,
    CONTACT_UPDATED,
    OBD,
    UNSUBSCRIPTION,
    WHATSAPP_INBOUND,
    channel_status,
    sms,
)

SPELLINGS = ["+91 98450-12345", "00919845012345", "919845012345", "9845012345", "098450 12345"]


def ids(response) -> set:
    assert response.status_code == 200, response.get_json()
    return {row["id"] for row in response.get_json()["data"]}


def test_every_spelling_of_a_mobile_finds_the_same_messages(hooks, api):
    for n, spelling in enumerate(SPELLINGS[:4]):
        assert hooks.post(sms(id=f"n:{n}", mobile=spelling)).status_code == 200
    hooks.post(channel_status("whatsapp", "read", "wa:1", "2024-01-01T10:00:00Z"))
    hooks.post(
        {"event": "whatsapp:message:status", "payload": {"id": "wa:2", "status": "sent", "to": "9845012345"}}
    )
    hooks.post(sms(id="other:1", mobile="919845012346"))
    expected = {"n:0", "n:1", "n:2", "n:3", "wa:2"}
    for spelling in SPELLINGS:
        assert ids(api("/api/v1/messages", query_string={"mobile": spelling})) == expected, spelling
    # The number is shown as received.
    shown = {row["id"]: row["mobile"] for row in api("/api/v1/messages?mobile=9845012345").get_json()["data"]}
    assert shown["n:0"] == "+91 98450-12345"


def test_a_cursor_works_for_any_spelling_of_the_same_number(hooks, api):
    for n in range(3):
        hooks.post(sms(id=f"c:{n}", mobile="919845012345"))
    first = api("/api/v1/messages", query_string={"mobile": "+91 98450 12345", "limit": 2}).get_json()
    cursor = first["next_cursor"]
    rest = api("/api/v1/messages", query_string={"mobile": "9845012345", "limit": 2, "cursor": cursor})
    assert len(first["data"]) + len(rest.get_json()["data"]) == 3


def test_inbound_and_call_numbers_match_any_spelling(hooks, api):
    inbound = copy.deepcopy(WHATSAPP_INBOUND)
    inbound["payload"]["recipient"]["from"] = "+91 98450 12345"
    inbound["payload"]["channels"][0]["to"] = "919019120000"
    assert hooks.post(inbound).status_code == 200
    assert hooks.post(dict(OBD, **{"from": 919845012345, "to": "08867130000"})).status_code == 200
    assert hooks.post(C2C).status_code == 200
    for spelling in SPELLINGS:
        assert ids(api("/api/v1/inbound", query_string={"from": spelling})) == {"our-message-id-wa"}
        assert len(ids(api("/api/v1/calls", query_string={"from": spelling}))) == 1
    assert ids(api("/api/v1/inbound", query_string={"to": "9019120000"})) == {"our-message-id-wa"}
    assert len(ids(api("/api/v1/calls", query_string={"to": "+91 88671 30000"}))) == 2  # OBD and C2C
    assert ids(api("/api/v1/inbound", query_string={"from": "919845012346"})) == set()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"provider_status": "DNDNUMB"}, {"dnd:1"}),
        ({"provider_status": "DELIVRD"}, {"jio:1", "jio:2"}),
        ({"provider_status": "read"}, {"wa:1"}),
        ({"operator": "Jio"}, {"jio:1", "jio:2"}),
        ({"operator": "Airtel", "region": "Delhi"}, {"dnd:1"}),
        ({"region": "Bangalore"}, {"jio:1"}),
        ({"sender": "MOBTXT"}, {"jio:2", "dnd:1"}),
        ({"sender": "MOBTXT", "status": "rejected"}, {"dnd:1"}),
        ({"operator": "jio"}, set()),  # exactly as the provider names it
    ],
)
def test_messages_filter_on_provider_status_operator_region_sender(hooks, api, query, expected):
    hooks.post(sms(id="jio:1", provider="Jio", region="Bangalore"))
    hooks.post(sms(id="jio:2", provider="Jio", region="Mumbai", sender="MOBTXT"))
    hooks.post(sms(id="dnd:1", status="DNDNUMB", provider="Airtel", region="Delhi", sender="MOBTXT"))
    hooks.post(channel_status("whatsapp", "read", "wa:1", "2024-01-01T10:00:00Z"))
    assert ids(api("/api/v1/messages", query_string=query)) == expected


def _opt_outs(hooks):
    posted = [
        ("/hooks/portal/unsubscription?channel=sms", dict(UNSUBSCRIPTION, id=1, receiver="919845012345")),
        (
            "/hooks/portal",
            {
                "event": "whatsapp:unsubscription",
                "payload": dict(UNSUBSCRIPTION, id=2, receiver="+91 98450 12345"),
            },
        ),
        ("/hooks/portal/unsubscription?channel=sms", dict(UNSUBSCRIPTION, id=3, receiver="9845012345")),
        ("/hooks/portal", dict(UNSUBSCRIPTION, id=4, receiver="917002080000")),
    ]
    for path, payload in posted:
        assert hooks.post(payload, path=path).status_code == 200


def test_opt_out_list_filters_and_pages(hooks, api):
    _opt_outs(hooks)
    everything = api("/api/v1/opt-outs").get_json()
    assert everything["next_cursor"] is None
    rows = everything["data"]
    assert [row["provider_id"] for row in rows] == ["4", "3", "2", "1"]  # newest first
    assert rows[2] == {
        "id": rows[2]["id"],
        "source": "portal",
        "channel": "whatsapp",
        "number": "+91 98450 12345",
        "type": "category",
        "value": "WUC",
        "status": "Unsubscriber created successfully",
        "provider_id": "2",
        "occurred_at": "2023-07-08T12:27:39Z",
        "received_at": rows[2]["received_at"],
        "raw_event_id": rows[2]["raw_event_id"],
    }
    by_number = api("/api/v1/opt-outs", query_string={"number": "00919845012345"}).get_json()["data"]
    assert [row["provider_id"] for row in by_number] == ["3", "2", "1"]
    sms_only = api("/api/v1/opt-outs", query_string={"number": "9845012345", "channel": "sms"})
    assert [row["provider_id"] for row in sms_only.get_json()["data"]] == ["3", "1"]
    # Channels are stored lower-cased (`?channel=SMS` on the webhook too): so is the filter.
    upper = api("/api/v1/opt-outs", query_string={"channel": "SMS"}).get_json()["data"]
    assert [row["provider_id"] for row in upper] == ["3", "1"]
    assert api("/api/v1/opt-outs", query_string={"until": "2000-01-01"}).get_json()["data"] == []
    page = api("/api/v1/opt-outs", query_string={"number": "9845012345", "limit": 2}).get_json()
    assert len(page["data"]) == 2
    rest = api(
        "/api/v1/opt-outs",
        query_string={"number": "+919845012345", "limit": 2, "cursor": page["next_cursor"]},
    )
    assert [row["provider_id"] for row in rest.get_json()["data"]] == ["1"]
    wrong = api("/api/v1/opt-outs", query_string={"cursor": page["next_cursor"]})
    assert wrong.status_code == 422 and "cursor" in wrong.get_json()["errors"]


def test_opt_out_check(hooks, api):
    _opt_outs(hooks)
    assert (
        hooks.post(dict(UNSUBSCRIPTION, id=5, receiver="917002080000"), path="/hooks/portal/rcs").status_code
        == 200
    )
    for spelling in SPELLINGS:
        answer = api("/api/v1/opt-outs/check", query_string={"number": spelling})
        assert answer.status_code == 200
        assert answer.get_json() == {
            "number": "919845012345",
            "opted_out": True,
            "channels": ["sms", "whatsapp"],
        }
    # An opt-out that named no channel shows as null.
    assert api("/api/v1/opt-outs/check?number=7002080000").get_json() == {
        "number": "917002080000",
        "opted_out": True,
        "channels": ["rcs", None],
    }
    assert api("/api/v1/opt-outs/check?number=9000000000").get_json() == {
        "number": "919000000000",
        "opted_out": False,
        "channels": [],
    }
    missing = api("/api/v1/opt-outs/check")
    assert missing.status_code == 422 and "number" in missing.get_json()["errors"]
    assert api("/api/v1/opt-outs/check?number=1&x=2").status_code == 422


def test_recordings_by_state_with_their_call(app, hooks, api):
    assert hooks.post(OBD).status_code == 200
    assert hooks.post(C2C).status_code == 200
    calls = {call["service"]: call for call in api("/api/v1/calls").get_json()["data"]}
    with app.extensions["receiver.db"].new_session() as session, session.begin():
        failed = session.get(Recording, calls["C2C"]["recordings"][0]["id"])
        failed.state, failed.last_error = RecordingState.failed, "403 from the provider"
    rows = api("/api/v1/recordings").get_json()["data"]
    assert [(row["call_id"], row["state"]) for row in rows] == [
        (calls["C2C"]["id"], "failed"),
        (calls["OBD"]["id"], "pending"),
    ]
    assert set(rows[0]) >= {
        "id",
        "call_id",
        "state",
        "attempts",
        "last_error",
        "created_at",
        "url_expires_at",
    }
    assert "url" not in rows[0]  # the provider's URL may carry a token
    only_failed = api("/api/v1/recordings?state=failed").get_json()["data"]
    assert [(row["call_id"], row["last_error"]) for row in only_failed] == [
        (calls["C2C"]["id"], "403 from the provider")
    ]
    assert ids(api("/api/v1/recordings", query_string={"call_id": calls["OBD"]["id"]})) == {rows[1]["id"]}
    assert api("/api/v1/recordings?state=stored").get_json()["data"] == []
    bad = api("/api/v1/recordings?state=lost")
    assert bad.status_code == 422 and "state" in bad.get_json()["errors"]


def test_contacts_list(hooks, api):
    assert hooks.post(CONTACT_CREATED).status_code == 200
    assert hooks.post(dict(CONTACT_UPDATED, mobile="+91 98450 12345")).status_code == 200
    rows = api("/api/v1/contacts").get_json()["data"]
    assert [row["status"] for row in rows] == [
        "Subscriber updated successfully",
        "Subscriber created successfully",
    ]
    created = rows[1]
    assert (created["contact_id"], created["identity"], created["email"], created["number"]) == (
        "86",
        "demo@gmail.com",
        "demo@gmail.com",
        None,
    )
    assert created["contact"]["attributes"]["membership"] == "platinum"
    assert created["occurred_at"] == "2023-07-16T11:45:34Z"
    for spelling in SPELLINGS:
        assert ids(api("/api/v1/contacts", query_string={"number": spelling})) == {rows[0]["id"]}
    assert len(ids(api("/api/v1/contacts?identity=demo@gmail.com"))) == 2
    assert len(ids(api("/api/v1/contacts?contact_id=86"))) == 2
    assert api("/api/v1/messages").get_json()["data"] == []


@pytest.mark.parametrize(
    "path", ["/api/v1/opt-outs", "/api/v1/opt-outs/check?number=1", "/api/v1/recordings", "/api/v1/contacts"]
)
def test_new_lists_need_a_key(client, path):
    answer = client.get(path)
    assert answer.status_code == 401
    assert answer.get_json()["status"] == "ERROR"


def test_a_number_typed_in_other_digits_finds_the_same_rows(hooks, api):
    assert hooks.post(sms(id="hi:1", mobile="९८४५०१२३४५")).status_code == 200  # stored canonical too
    assert hooks.post(sms(id="hi:2", mobile="919845012345")).status_code == 200
    for spelling in ["९८४५० १२३४५", "٩٨٤٥٠١٢٣٤٥", "＋９１ ９８４５０ １２３４５", "\u200e+91 98450 12345"]:
        assert ids(api("/api/v1/messages", query_string={"mobile": spelling})) == {"hi:1", "hi:2"}, spelling


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/opt-outs/check", "number"),
        ("/api/v1/opt-outs", "number"),
        ("/api/v1/contacts", "number"),
        ("/api/v1/messages", "mobile"),
        ("/api/v1/inbound", "from"),
        ("/api/v1/calls", "to"),
    ],
)
def test_a_blank_number_is_refused_not_looked_up(api, path, field):
    # A script that lost its number must not read "not opted out" for it.
    answer = api(path, query_string={field: "  "})
    assert answer.status_code == 422
    assert answer.get_json()["errors"] == {field: ["Must not be blank."]}


def test_the_openapi_document_says_which_numbers_are_blank(app, api):
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    (number,) = spec["paths"]["/api/v1/opt-outs/check"]["get"]["parameters"]
    pattern = re.compile(number["schema"]["pattern"])
    for blank in ("\x0b", " \t "):
        assert pattern.search(blank) is None
        assert api("/api/v1/opt-outs/check", query_string={"number": blank}).status_code == 422
    for kept in (" 9845012345", "+91", "\xa0"):  # a no-break space alone: looked up, finds nothing
        assert pattern.search(kept)
        assert api("/api/v1/opt-outs/check", query_string={"number": kept}).status_code == 200
