"""Each kind of webhook in PROVIDER.md, in each shape the platform may send it, read back."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from receiver.models import Call, InboundMessage, OptOut, Recording
from tests.conftest import row_counts
from tests.payloads import (
    C2C,
    OBD,
    RCS_INBOUND_MEDIA,
    RCS_INBOUND_TEXT,
    SMS_DLR,
    UNSUBSCRIPTION,
    VMN_INBOUND,
    WHATSAPP_INBOUND,
    WHATSAPP_STATUS,
    channel_status,
    sms,
)


def rows(app, model):
    with app.extensions["receiver.db"].new_session() as session:
        return list(session.scalars(sa.select(model).order_by(model.id)))


def test_sms_dlr_fields(hooks, api):
    hooks.post(SMS_DLR)
    message = api(f"/api/v1/messages/{SMS_DLR['id']}").get_json()
    assert message["id"] == SMS_DLR["id"]
    assert message["source"] == "portal"
    assert message["channel"] == "sms"
    assert message["mobile"] == "918921269xxx"
    assert message["status"] == "delivered"
    assert message["provider_status"] == "DELIVRD"
    assert message["custom"] == "9882XXXX"
    assert message["custom1"] == "campaign-3344"
    assert message["cid"] == "1234444XXXX"
    assert message["credits"] == "2.0000"
    assert message["units"] == 2
    assert message["operator"] == "Jio"
    assert message["region"] == "Bangalore"
    # the unix times win over the texts
    assert message["delivered_at"] == "2023-11-27T12:03:05Z"
    assert message["sent_at"] == "2023-11-27T05:33:00Z"
    assert message["submitted_at"] == "2023-11-27T04:33:02Z"
    assert message["created_at"].endswith("Z")
    (event,) = message["events"]
    assert event["status"] == "delivered"
    assert event["provider_status"] == "DELIVRD"
    assert event["occurred_at"] == "2023-11-27T12:03:05Z"
    assert event["received_at"].endswith("Z")
    assert event["source"] == "portal"


def test_time_texts_are_in_the_provider_timezone(hooks, api):
    payload = sms(id="tz:1", deliv_at=None, sent_at=None, submit_at=None)
    hooks.post(payload)
    message = api("/api/v1/messages/tz:1").get_json()
    # 16:27:51 in Asia/Kolkata (UTC+5:30)
    assert message["delivered_at"] == "2021-04-09T10:57:51Z"


def test_numbers_as_strings_or_numbers(hooks, api):
    hooks.post(sms(id="n:1", units="3", credits=1.5, deliv_at=1701086585))
    message = api("/api/v1/messages/n:1").get_json()
    assert message["units"] == 3
    assert message["credits"] == "1.5000"
    assert message["delivered_at"] == "2023-11-27T12:03:05Z"


def test_null_is_absent_and_unknown_keys_are_kept(hooks, api, app):
    payload = sms(id="null:1", custom=None)
    payload["custom"] = None
    payload["brand_new_field"] = {"anything": [1, 2]}
    response = hooks.post(payload)
    assert response.status_code == 200
    assert api("/api/v1/messages/null:1").get_json()["custom"] is None


def test_legacy_get_with_query_string(client, source_secret, api, app):
    query = urlencode({"secret": source_secret, "mobile": "919000000001", "status": "DELIVRD", "id": "get:1"})
    response = client.get(f"/hooks/portal?{query}")
    assert response.status_code == 200, response.get_json()
    assert api("/api/v1/messages/get:1").get_json()["status"] == "delivered"


def test_composed_get_with_free_names(client, source_secret, api):
    query = urlencode(
        {"secret": source_secret, "message_id": "c:1", "mobile_number": "9190", "message_status": "UNDELIV"}
    )
    response = client.get(f"/hooks/portal/sms-status?{query}")
    assert response.status_code == 200, response.get_json()
    message = api("/api/v1/messages/c:1").get_json()
    assert (message["status"], message["mobile"]) == ("failed", "9190")


def test_form_body_put(client, source_secret, api):
    response = client.put(
        "/hooks/portal",
        data={"id": "form:1", "mobile": "9190", "status": "REJECTED"},
        headers={"Authorization": f"Bearer {source_secret}"},
    )
    assert response.status_code == 200, response.get_json()
    assert api("/api/v1/messages/form:1").get_json()["status"] == "rejected"


def test_json_array_is_one_event_per_item(hooks, app):
    response = hooks.post([sms(id="arr:1"), sms(id="arr:2"), sms(id="arr:3")])
    assert response.status_code == 200
    assert response.get_json()["events"] == ["arr:1", "arr:2", "arr:3"]
    counts = row_counts(app)
    assert (counts["raw_events"], counts["messages"]) == (1, 3)


def test_whatsapp_status(hooks, api):
    response = hooks.post(WHATSAPP_STATUS)
    assert response.status_code == 200
    message = api(f"/api/v1/messages/{WHATSAPP_STATUS['payload']['id']}").get_json()
    assert message["channel"] == "whatsapp"
    assert message["mobile"] == "9190199xxxxx"
    assert message["foreign_id"] == "your-business-identifier"
    assert message["status"] == "delivered"
    assert message["delivered_at"] == "2021-06-18T14:48:06.886358Z"


@pytest.mark.parametrize("channel", ["rcs", "viber"])
def test_rcs_and_viber_status(hooks, api, channel):
    payload = channel_status(channel, "read", f"{channel}-1", "2021-06-18T14:50:00Z")
    assert hooks.post(payload).status_code == 200
    message = api(f"/api/v1/messages/{channel}-1").get_json()
    assert (message["channel"], message["status"]) == (channel, "read")


def test_vmn_inbound(hooks, app):
    response = hooks.post(VMN_INBOUND)
    assert response.status_code == 200
    assert response.get_json()["events"] == ["our-message-id"]
    (inbound,) = rows(app, InboundMessage)
    assert inbound.channel == "sms"
    assert inbound.from_number == "918074XXXXXX"
    assert inbound.to_number == "919019XXXXXX"
    assert inbound.text == "This is a simple text message"
    assert inbound.contact["first_name"] == "user first name"


def test_whatsapp_inbound_id_and_time_inside_message(hooks, app):
    hooks.post(WHATSAPP_INBOUND)
    (inbound,) = rows(app, InboundMessage)
    assert inbound.id == "our-message-id-wa"
    assert inbound.channel == "whatsapp"
    assert inbound.occurred_at == datetime(2024, 7, 9, 10, 3, 37, 338022, tzinfo=UTC)


def test_rcs_media_inbound_id_and_time_at_payload_level(hooks, app):
    hooks.post(RCS_INBOUND_MEDIA)
    (inbound,) = rows(app, InboundMessage)
    assert inbound.id == "rcs-inbound-1"
    assert inbound.type == "image"
    assert inbound.media_url == "https://domin-name.com/your_image_path.png"
    assert inbound.caption == "some caption for image"
    assert inbound.occurred_at is not None


def test_inbound_without_id_gets_one_and_is_deduplicated(hooks, app):
    first = hooks.post(RCS_INBOUND_TEXT)
    assert first.status_code == 200
    reordered = copy.deepcopy(RCS_INBOUND_TEXT)
    reordered["payload"] = dict(reversed(list(reordered["payload"].items())))
    second = hooks.post(reordered)
    assert second.get_json()["message"] == "duplicate"
    (inbound,) = rows(app, InboundMessage)
    assert inbound.id.startswith("sha256:")
    assert inbound.text == "hello from rcs"


def test_obd_call_with_recording(hooks, app):
    response = hooks.post(OBD)
    assert response.status_code == 200
    (call,) = rows(app, Call)
    assert response.get_json()["events"] == [call.id]
    assert (call.service, call.bridge, call.from_number, call.to_number) == (
        "OBD",
        "918068280000",
        "918919520000",
        "918867130000",
    )
    assert (call.mid, call.flow_id, call.duration, call.status) == ("1234-1333-XXXXX", "123", 23, "ANSWER")
    assert call.start_at == datetime(2021, 4, 9, 10, 57, 39, tzinfo=UTC)
    (recording,) = rows(app, Recording)
    assert recording.call_id == call.id
    assert recording.state == "pending"
    assert recording.url == OBD["recording_url"]
    assert (recording.url_expires_at - call.received_at).total_seconds() == 7200


def test_c2c_retry_with_new_send_time_is_a_duplicate(hooks, app):
    assert hooks.post(C2C).status_code == 200
    retry = dict(C2C, date="2021-04-09 17:00:00", unixtime="1653459999")
    response = hooks.post(retry)
    assert response.get_json()["message"] == "duplicate"
    (call,) = rows(app, Call)
    assert (call.billing, call.status1, call.status2, call.hangup_by) == (23, "RECEIVED", "ANSWER", "caller")
    assert len(rows(app, Recording)) == 1


def test_call_without_recording(hooks, app):
    hooks.post(dict(OBD, recording_url=""))
    assert len(rows(app, Call)) == 1
    assert rows(app, Recording) == []


def test_unsubscription_flat_and_enveloped(hooks, app):
    assert hooks.post(UNSUBSCRIPTION).status_code == 200
    enveloped = {"event": "whatsapp:unsubscription", "payload": dict(UNSUBSCRIPTION, id="uuid-77")}
    assert hooks.post(enveloped).status_code == 200
    flat, whatsapp = rows(app, OptOut)
    assert (flat.receiver, flat.type, flat.value, flat.provider_id) == (
        "91700208xxxx",
        "category",
        "WUC",
        "436",
    )
    assert whatsapp.channel == "whatsapp"
    assert hooks.post(UNSUBSCRIPTION).get_json()["message"] == "duplicate"


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("sms-status", {"id": "k:1", "status": "DELIVRD"}),
        ("sms-inbound", {"from": "9190", "to": "9191", "text": "STOP", "keyword1": "STOP"}),
        ("whatsapp", {"id": "k:2", "status": "read", "to": "9190"}),
        ("rcs", {"event": "rcs:message:in", "payload": RCS_INBOUND_MEDIA["payload"]}),
        ("viber", {"id": "k:3", "status": "sent"}),
        ("voice", {"from": "9190", "to": "9191", "status": "BUSY"}),
        ("unsubscription", {"receiver": "9190", "type": "all"}),
    ],
)
def test_kind_named_in_the_url(hooks, app, kind, payload):
    response = hooks.post(payload, path=f"/hooks/portal/{kind}")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["message"] == "stored"


def test_inbound_keywords_from_a_composed_callback(hooks, app):
    hooks.post(
        {"from": "9190", "to": "9191", "text": "JOIN NOW", "keyword1": "JOIN"},
        path="/hooks/portal/sms-inbound",
    )
    (inbound,) = rows(app, InboundMessage)
    assert (inbound.keyword1, inbound.text, inbound.channel) == ("JOIN", "JOIN NOW", "sms")
