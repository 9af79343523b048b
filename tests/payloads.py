"""The provider's documented example payloads (PROVIDER.md), as valid JSON."""

from __future__ import annotations

import copy
from typing import Any

SMS_DLR: dict[str, Any] = {
    "id": "b34e35ad-fe34-4a8b-977c-b21cd76cd7d6:1",
    "mobile": "918921269xxx",
    "status": "DELIVRD",
    "credits": "2.0000",
    "units": 2,
    "deliv_at": "1701086585",
    "sent_at": "1701063180",
    "submit_at": "1701059582",
    "deliv_time": "2021-04-09 16:27:51",
    "sent_time": "2021-04-09 16:27:35",
    "submit_time": "2021-04-09 16:27:39",
    "cid": "1234444XXXX",
    "custom": "9882XXXX",
    "custom1": "campaign-3344",
    "custom2": "new-campXXX",
    "location": "India",
    "region": "Bangalore",
    "provider": "Jio",
    "location_code": "in",
    "region_code": "KA",
    "provider_code": "RJ",
}

USER = {
    "id": "unique-id",
    "identifier_id": "unique-identifier-id",
    "subscriber_id": "unique-subscriber-id",
    "identity": "unique-user-identity",
    "username": "username",
    "first_name": "user first name",
    "middle_name": "user middle name",
    "last_name": "user last name",
    "email": "user email",
    "phone": "user phone number",
    "attributes": "user attributes",
    "user_info": {"picture": "null", "gender": "user-gender", "title": "null"},
}

VMN_INBOUND: dict[str, Any] = {
    "event": "vmn:message:in",
    "payload": {
        "id": "our-message-id",
        "channels": [{"name": "vmn", "to": "919019XXXXXX"}],
        "recipient": {"from": "918074XXXXXX", "user": USER},
        "message": {"type": "text", "payload": {"text": "This is a simple text message"}},
    },
}

WHATSAPP_STATUS: dict[str, Any] = {
    "event": "whatsapp:message:status",
    "payload": {
        "id": "a418d672-9781-4d97-b517-a56f7d95ad8a",
        "channel": "whatsapp",
        "from": "919019120xxx",
        "to": "9190199xxxxx",
        "status": "delivered",
        "delivered_at": "2021-06-18T14:48:06.886358Z",
        "read_at": "2021-06-18T14:48:06.886358Z",
        "processed_at": "2021-06-18T14:48:06.886358Z",
        "foreign_id": "your-business-identifier",
        "timestamp": "2021-06-18T14:48:06.886358Z",
    },
}

WHATSAPP_INBOUND: dict[str, Any] = {
    "event": "whatsapp:message:in",
    "payload": {
        "id": "our-message-id-wa",
        "channels": [{"name": "whatsapp", "to": "919019120xxx"}],
        "recipient": {"from": "91XXXXXX", "user": USER},
        "message": {
            "type": "text",
            "payload": {"text": "This is a simple text message from whatsapp channel"},
            "id": "b215da80-04bf-46f8-9b21-674c359b94b3",
            "timestamp": "2024-07-09T10:03:37.338022Z",
        },
    },
}

RCS_INBOUND_MEDIA: dict[str, Any] = {
    "event": "rcs:message:in",
    "payload": {
        "id": "rcs-inbound-1",
        "timestamp": "2024-07-09T10:03:37.338022Z",
        "channels": [{"name": "rcs", "to": "700969ca-0cb2-11ec-a2cxxxx"}],
        "recipient": {"from": "91XXXXXX", "user": USER},
        "message": {
            "type": "image",
            "payload": {
                "url": "https://domin-name.com/your_image_path.png",
                "caption": "some caption for image",
                "filename": "",
            },
        },
    },
}

RCS_INBOUND_TEXT: dict[str, Any] = {
    "event": "rcs:message:in",
    "payload": {
        "channels": [{"name": "rcs", "to": "700969ca-0cb2-11ec-a2cxxxx"}],
        "recipient": {"from": "91XXXXXX", "user": USER},
        "message": {"type": "text", "payload": {"text": "hello from rcs"}},
    },
}

UNSUBSCRIPTION: dict[str, Any] = {
    "id": 436,
    "receiver": "91700208xxxx",
    "type": "category",
    "value": "WUC",
    "created_at": "2023-07-08T12:27:39.000000Z",
    "status": "Unsubscriber created successfully",
}

# `contacts:subscriber:subscription`, as documented (a flat contact object and a status text).
CONTACT_CREATED: dict[str, Any] = {
    "id": 86,
    "identity": "demo@gmail.com",
    "first_name": "Demo",
    "middle_name": None,
    "last_name": "Test",
    "gender": "male",
    "birth_date": "1996-07-16",
    "company": None,
    "attributes": {"membership": "platinum", "status": "vip", "customerNumber": "23"},
    "created_at": "2023-07-16T11:45:34.000000Z",
    "updated_at": "2023-07-16T11:45:34.000000Z",
    "status": "Subscriber created successfully",
}
CONTACT_UPDATED: dict[str, Any] = dict(
    CONTACT_CREATED,
    created_at="2023-07-17T11:45:34.000000Z",
    updated_at="2023-07-17T11:46:06.000000Z",
    status="Subscriber updated successfully",
)

OBD: dict[str, Any] = {
    "bridge": 918068280000,
    "from": 918919520000,
    "to": 918867130000,
    "source": "OBD",
    "mid": "1234-1333-XXXXX",
    "flow_id": 123,
    "start_at": "2021-04-09 16:27:39",
    "end_at": "2021-04-09 16:27:55",
    "duration": "23",
    "status": "ANSWER",
    "recording_url": "https://youraudiofilelocation/",
}

C2C: dict[str, Any] = {
    "bridge": 918068280000,
    "from": 918919520000,
    "to": 918867130000,
    "source": "C2C",
    "start_at": "2021-04-09 16:27:39",
    "end_at": "2021-04-09 16:27:55",
    "date": "2021-04-09 16:27:55",
    "unixtime": "1653455555",
    "duration": "23",
    "billing": "23",
    "status": "COMPLETED",
    "status1": "RECEIVED",
    "status2": "ANSWER",
    "recording_url": "https://youraudiofilelocation/c2c.mp3",
    "hangup_by": "caller",
}


def channel_status(channel: str, status: str, message_id: str, timestamp: str) -> dict[str, Any]:
    payload = copy.deepcopy(WHATSAPP_STATUS)
    payload["event"] = f"{channel}:message:status"
    for key in ("delivered_at", "read_at", "processed_at"):
        del payload["payload"][key]
    payload["payload"].update(channel=channel, status=status, id=message_id, timestamp=timestamp)
    return payload


def sms(**changes: Any) -> dict[str, Any]:
    payload = dict(SMS_DLR)
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}
