"""Contact events and opt-out channels as ingest stores them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from receiver.models import ContactEvent, Message, OptOut, RawState
from tests.conftest import raw_events, row_counts
from tests.payloads import CONTACT_CREATED, CONTACT_UPDATED, UNSUBSCRIPTION


def rows(app, model):
    with app.extensions["receiver.db"].new_session() as session:
        return list(session.scalars(sa.select(model).order_by(model.id)))


def test_documented_contact_event_is_a_contact_event(hooks, app):
    response = hooks.post(CONTACT_CREATED)
    assert response.status_code == 200, response.get_json()
    (contact,) = rows(app, ContactEvent)
    assert response.get_json()["events"] == [contact.id]
    assert (contact.contact_id, contact.identity, contact.email) == ("86", "demo@gmail.com", "demo@gmail.com")
    assert (contact.first_name, contact.last_name) == ("Demo", "Test")
    assert contact.status == "Subscriber created successfully"
    assert contact.occurred_at == datetime(2023, 7, 16, 11, 45, 34, tzinfo=UTC)
    assert contact.contact["attributes"] == {
        "membership": "platinum",
        "status": "vip",
        "customerNumber": "23",
    }
    assert contact.number is None
    assert raw_events(app)[0].kinds == ["contact"]
    assert row_counts(app)["messages"] == 0


def test_contact_with_a_mobile_is_not_an_sms_report(hooks, app):
    """Such an event has `mobile` and `status`, as an SMS report has: it was stored as a message."""
    response = hooks.post(dict(CONTACT_CREATED, mobile="+91 98450-12345"))
    assert response.status_code == 200, response.get_json()
    assert rows(app, Message) == []
    (contact,) = rows(app, ContactEvent)
    assert (contact.number, contact.number_canonical) == ("+91 98450-12345", "919845012345")


def test_enveloped_contact_event_and_an_identity_that_is_a_number(hooks, app):
    payload = dict(CONTACT_UPDATED, identity="09845012345")
    response = hooks.post({"event": "contacts:subscriber:subscription", "payload": payload})
    assert response.status_code == 200, response.get_json()
    (contact,) = rows(app, ContactEvent)
    assert (contact.number, contact.number_canonical, contact.email) == ("09845012345", "919845012345", None)
    assert contact.status == "Subscriber updated successfully"
    assert rows(app, Message) == []


def test_create_then_update_are_two_events_and_a_retry_is_a_duplicate(hooks, app):
    assert hooks.post(CONTACT_CREATED).get_json()["message"] == "stored"
    assert hooks.post(CONTACT_UPDATED).get_json()["message"] == "stored"
    again = hooks.post(CONTACT_UPDATED).get_json()
    assert again["message"] == "duplicate"
    created, updated = rows(app, ContactEvent)
    assert again["events"] == [updated.id]
    assert [created.contact_id, updated.contact_id] == ["86", "86"]


@pytest.mark.parametrize(
    "payload", [CONTACT_CREATED, {"event": "contacts:subscriber:subscription", "payload": CONTACT_UPDATED}]
)
def test_contact_event_posted_to_a_channel_url_is_a_contact_event(hooks, app, payload):
    response = hooks.post(dict(payload), path="/hooks/portal/whatsapp")
    assert response.status_code == 200, response.get_json()
    assert len(rows(app, ContactEvent)) == 1
    assert rows(app, Message) == []


@pytest.mark.parametrize("kind", ["sms-status", "sms-inbound", "voice", "unsubscription"])
@pytest.mark.parametrize(
    "payload",
    [
        CONTACT_CREATED,
        dict(CONTACT_UPDATED, mobile="919845012345"),
        {"event": "contacts:subscriber:subscription", "payload": CONTACT_UPDATED},
    ],
)
def test_contact_event_posted_to_any_kind_url_is_a_contact_event(hooks, app, kind, payload):
    """The URL names a kind, but a contact object is never a message, an inbound, a call or an opt-out."""
    response = hooks.post(dict(payload), path=f"/hooks/portal/{kind}")
    assert response.status_code == 200, response.get_json()
    assert len(rows(app, ContactEvent)) == 1
    assert raw_events(app)[0].kinds == ["contact"]
    counts = row_counts(app)
    assert (counts["messages"], counts["inbound_messages"], counts["calls"], counts["opt_outs"]) == (
        0,
        0,
        0,
        0,
    )


def test_contact_naming_no_one_is_quarantined(hooks, app):
    response = hooks.post({"event": "contacts:subscriber:subscription", "payload": {"first_name": "A"}})
    assert response.status_code == 422
    assert raw_events(app)[0].state == RawState.quarantined
    assert rows(app, ContactEvent) == []


def test_an_opt_out_is_not_a_contact_event(hooks, app):
    """An opt-out's status reads "Unsubscriber created successfully"."""
    assert hooks.post(UNSUBSCRIPTION).status_code == 200
    assert len(rows(app, OptOut)) == 1
    assert rows(app, ContactEvent) == []


@pytest.mark.parametrize(
    ("path", "payload", "channel"),
    [
        ("/hooks/portal/unsubscription?channel=sms", UNSUBSCRIPTION, "sms"),
        ("/hooks/portal/unsubscription?channel=WhatsApp", UNSUBSCRIPTION, "whatsapp"),
        ("/hooks/portal?channel=rcs", UNSUBSCRIPTION, "rcs"),
        ("/hooks/portal/viber", UNSUBSCRIPTION, "viber"),
        ("/hooks/portal", {"event": "voice:unsubscription", "payload": UNSUBSCRIPTION}, "voice"),
        # The envelope's event name wins over the URL's parameter.
        (
            "/hooks/portal/unsubscription?channel=sms",
            {"event": "rcs:unsubscription", "payload": UNSUBSCRIPTION},
            "rcs",
        ),
        ("/hooks/portal", dict(UNSUBSCRIPTION, channel="sms"), "sms"),
        ("/hooks/portal/unsubscription", UNSUBSCRIPTION, None),
    ],
)
def test_opt_out_channel_from_the_payload_or_the_url(hooks, app, path, payload, channel):
    response = hooks.post(payload, path=path)
    assert response.status_code == 200, response.get_json()
    (opt_out,) = rows(app, OptOut)
    assert opt_out.channel == channel
    assert (opt_out.receiver, opt_out.number_canonical) == ("91700208xxxx", "91700208xxxx")
