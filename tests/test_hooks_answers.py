"""Every row of SPEC §3's answer table: the code, the JSON body, and what is stored afterwards."""

from __future__ import annotations

import hashlib
import hmac
import io
import json

import pytest
from flask import Flask

from receiver import create_app
from receiver.db import get_db
from receiver.models import RawState
from receiver.sources import add_source
from tests.conftest import raw_events, row_counts
from tests.payloads import SMS_DLR, sms


def test_stored(hooks, app):
    response = hooks.post(SMS_DLR)
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "OK",
        "code": 200,
        "message": "stored",
        "events": [SMS_DLR["id"]],
    }
    counts = row_counts(app)
    assert counts["raw_events"] == 1
    assert counts["messages"] == 1
    assert counts["message_events"] == 1
    (raw,) = raw_events(app)
    assert raw.state == RawState.processed
    assert raw.body == json.dumps(SMS_DLR).encode()
    assert raw.sha256 == hashlib.sha256(raw.body).hexdigest()
    assert raw.method == "POST"
    assert raw.source == "portal"
    assert raw.remote_addr == "127.0.0.1"


def test_same_request_again_is_a_duplicate_and_stores_nothing(hooks, app):
    assert hooks.post(SMS_DLR).status_code == 200
    before = row_counts(app)
    response = hooks.post(SMS_DLR)
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "OK"
    assert body["message"] == "duplicate"
    assert body["events"] == [SMS_DLR["id"]]
    assert row_counts(app) == before


def test_same_event_in_a_different_request_is_a_duplicate(hooks, app):
    """A retry whose bytes differ (key order) adds no message, status or event."""
    assert hooks.post(SMS_DLR).status_code == 200
    reordered = json.dumps(dict(reversed(list(SMS_DLR.items()))))
    response = hooks.post(reordered, content_type="application/json")
    assert response.status_code == 200
    assert response.get_json()["message"] == "duplicate"
    counts = row_counts(app)
    assert counts["messages"] == 1
    assert counts["message_events"] == 1
    assert [raw.state for raw in raw_events(app)] == [RawState.processed, RawState.duplicate]


def test_unknown_kind_is_accepted_and_kept_for_replay(hooks, app):
    smart_link = {"link_id": 7, "user_agent": "x", "browser": "Firefox", "city": "Pune"}
    response = hooks.post(smart_link)
    assert response.status_code == 202
    assert response.get_json() == {"status": "OK", "code": 202, "message": "accepted", "events": []}
    (raw,) = raw_events(app)
    assert raw.state == RawState.pending
    counts = row_counts(app)
    assert counts["messages"] == counts["calls"] == counts["inbound_messages"] == 0


def test_unknown_event_name_is_accepted(hooks, app):
    response = hooks.post({"event": "link:visit", "payload": {"id": 1, "link_id": 7}})
    assert response.status_code == 202
    assert raw_events(app)[0].state == RawState.pending


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (sms(id=None), "id"),
        (sms(deliv_at="yesterday"), "deliv_at"),
        (sms(units="two"), "units"),
        (sms(mobile={"nested": True}), "mobile"),
    ],
)
def test_validation_failure_is_quarantined(hooks, app, payload, field):
    response = hooks.post(payload)
    assert response.status_code == 422
    body = response.get_json()
    assert body["status"] == "ERROR"
    assert body["code"] == 422
    assert isinstance(body["message"], str)
    assert field in body["errors"]
    (raw,) = raw_events(app)
    assert raw.state == RawState.quarantined
    assert field in raw.errors
    assert body["event"] == raw.id
    assert row_counts(app)["messages"] == 0


def test_broken_json_is_quarantined_with_its_bytes(hooks, app):
    broken = b'{"id": "x:1", "status": "DELIVRD",}'
    response = hooks.post(broken, content_type="application/json")
    assert response.status_code == 422
    assert "body" in response.get_json()["errors"]
    (raw,) = raw_events(app)
    assert raw.body == broken
    assert raw.state == RawState.quarantined


def test_quarantined_request_sent_again_answers_the_same_and_stores_nothing(hooks, app):
    first = hooks.post(sms(id=None))
    second = hooks.post(sms(id=None))
    assert first.status_code == second.status_code == 422
    assert first.get_json()["errors"] == second.get_json()["errors"]
    assert row_counts(app)["raw_events"] == 1


def test_array_with_one_invalid_item_is_quarantined_whole(hooks, app):
    response = hooks.post([sms(id="a:1"), sms(id=None)])
    assert response.status_code == 422
    assert "1.id" in response.get_json()["errors"]
    assert row_counts(app)["messages"] == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-secret"}, {"Authorization": "Basic czNjcmV0"}],
)
def test_bad_or_missing_secret(client, source_secret, app, headers):
    response = client.post("/hooks/portal", json=SMS_DLR, headers=headers)
    assert response.status_code == 401
    body = response.get_json()
    assert body["status"] == "ERROR"
    assert body["code"] == 401
    counts = row_counts(app)
    assert counts["raw_events"] == 0
    with app.extensions["receiver.db"].new_session() as session:
        from receiver.sources import list_sources

        assert list_sources(session)[0].auth_failures == 1


def test_secret_in_query_string_is_accepted_and_not_stored(client, source_secret, app):
    response = client.post(f"/hooks/portal?secret={source_secret}", json=SMS_DLR)
    assert response.status_code == 200
    (raw,) = raw_events(app)
    assert source_secret not in raw.query_string
    assert raw.query_string == "secret=REDACTED"
    assert "Authorization" not in raw.headers


def test_bearer_secret_is_not_stored(hooks, app, source_secret):
    hooks.post(SMS_DLR)
    (raw,) = raw_events(app)
    stored = json.dumps(raw.headers) + raw.query_string + raw.body.decode()
    assert source_secret not in stored
    assert not {name.lower() for name in raw.headers} & {"authorization"}


def test_custom_headers_named_as_credentials_are_stored_redacted(client, app, source_secret):
    # The portal lets a webhook carry custom headers: one that looks like a credential keeps its
    # name in the raw request, never its value.
    headers = {
        "Authorization": f"Bearer {source_secret}",
        "X-Webhook-Secret": "hunter2-secret",
        "X-Auth-Token": "hunter2-token",
        "X-Customer-Password": "hunter2-password",
        "X-Trace": "kept-as-sent",
    }
    assert client.post("/hooks/portal", json=SMS_DLR, headers=headers).status_code == 200
    (raw,) = raw_events(app)
    assert "hunter2" not in json.dumps(raw.headers)
    assert raw.headers["X-Webhook-Secret"] == "REDACTED"
    assert raw.headers["X-Auth-Token"] == "REDACTED"
    assert raw.headers["X-Customer-Password"] == "REDACTED"
    assert raw.headers["X-Trace"] == "kept-as-sent"


def test_unknown_source(client, app):
    response = client.post("/hooks/nobody", json=SMS_DLR, headers={"Authorization": "Bearer x"})
    assert response.status_code == 404
    assert response.get_json()["status"] == "ERROR"
    assert row_counts(app)["raw_events"] == 0


def test_unknown_kind_in_url_is_404(hooks, app):
    assert hooks.post(SMS_DLR, path="/hooks/portal/fax").status_code == 404
    assert row_counts(app)["raw_events"] == 0


def test_body_over_limit(settings, source_secret):
    settings["MAX_BODY_BYTES"] = 1000
    big_app = create_app(settings)
    client = big_app.test_client()
    payload = sms(custom="x" * 2000)
    response = client.post(
        "/hooks/portal", json=payload, headers={"Authorization": f"Bearer {source_secret}"}
    )
    assert response.status_code == 413
    assert response.get_json()["code"] == 413
    assert row_counts(big_app)["raw_events"] == 0
    get_db_engine(big_app).dispose()


def test_body_over_limit_without_content_length(settings, source_secret):
    """A chunked body has no Content-Length: the limit holds while reading."""
    settings["MAX_BODY_BYTES"] = 1000
    big_app = create_app(settings)
    body = b'{"id": "a:1", "custom": "' + b"x" * 5000 + b'"}'
    response = big_app.test_client().post(
        "/hooks/portal",
        input_stream=io.BytesIO(body),
        headers={"Authorization": f"Bearer {source_secret}", "Content-Type": "application/json"},
        environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert row_counts(big_app)["raw_events"] == 0
    get_db_engine(big_app).dispose()


def get_db_engine(application: Flask):
    with application.app_context():
        return get_db().engine


def test_database_unavailable_is_503_with_retry_after(settings):
    settings["DATABASE_URL"] = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    down = create_app(settings)
    response = down.test_client().post("/hooks/portal", json=SMS_DLR, headers={"Authorization": "Bearer x"})
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert response.get_json()["status"] == "ERROR"
    assert down.test_client().get("/readyz").status_code == 503
    assert down.test_client().get("/healthz").status_code == 200


def _signed(app, signing_key):
    with app.extensions["receiver.db"].new_session() as session:
        return add_source(session, "signed", secret="signed-secret-1234", signing_key=signing_key).secret


def test_signature_checked_when_the_source_has_a_signing_key(client, app):
    secret = _signed(app, "sign-key")
    body = json.dumps(SMS_DLR).encode()
    good = hmac.new(b"sign-key", body, hashlib.sha256).hexdigest()
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    unsigned = client.post("/hooks/signed", data=body, headers=headers)
    assert unsigned.status_code == 401
    forged = client.post("/hooks/signed", data=body, headers={**headers, "Signature": "0" * 64})
    assert forged.status_code == 401
    assert row_counts(app)["raw_events"] == 0
    signed = client.post("/hooks/signed", data=body, headers={**headers, "Signature": good})
    assert signed.status_code == 200
    assert raw_events(app)[0].headers["Signature"] == good


def test_verification_handshake(client, app):
    with app.extensions["receiver.db"].new_session() as session:
        add_source(session, "verified", secret="verified-secret-1", validation_key="9012XXXX")
    body = {"validation_key": "9012XXXX", "challenge": "a234qwe"}
    response = client.post("/hooks/verified?token=9012XXXX", json=body)
    assert response.status_code == 200
    assert response.get_json() == {"challenge": "a234qwe"}
    wrong = client.post("/hooks/verified?token=nope", json=body)
    assert wrong.status_code == 401
    assert wrong.get_json()["status"] == "ERROR"
    assert row_counts(app)["raw_events"] == 0


def test_handshake_refused_for_a_source_without_validation_key(client, source_secret, app):
    response = client.post("/hooks/portal?token=anything", json={"challenge": "c"})
    assert response.status_code == 401


FAULT_TRIGGERS = {
    "sqlite": [
        "CREATE TRIGGER injected_fault BEFORE INSERT ON messages WHEN NEW.custom = 'boom' "
        "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION injected_fault() RETURNS trigger AS $$ BEGIN "
        "IF NEW.custom = 'boom' THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END "
        "$$ LANGUAGE plpgsql",
        "CREATE TRIGGER injected_fault BEFORE INSERT ON messages "
        "FOR EACH ROW EXECUTE FUNCTION injected_fault()",
    ],
}
DROP_FAULT = {
    "sqlite": ["DROP TRIGGER IF EXISTS injected_fault"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS injected_fault ON messages",
        "DROP FUNCTION IF EXISTS injected_fault()",
    ],
}


def test_a_fault_while_normalizing_keeps_the_raw_request_for_replay(hooks, app):
    """A fault below the raw insert (a bug, injected here by a database trigger) answers 202,
    keeps the raw request pending, and a replay after the fix stores it."""
    import sqlalchemy as sa

    from receiver.ingest.service import Settings, reprocess

    engine = get_db_engine(app)
    dialect = engine.dialect.name
    with engine.begin() as connection:
        for statement in FAULT_TRIGGERS[dialect]:
            connection.execute(sa.text(statement))
    try:
        response = hooks.post(sms(id="fault:1", custom="boom"))
        assert response.status_code == 202
        assert response.get_json()["message"] == "accepted"
        (raw,) = raw_events(app)
        assert raw.state == RawState.pending
        assert row_counts(app)["messages"] == 0
    finally:
        with engine.begin() as connection:
            for statement in DROP_FAULT[dialect]:
                connection.execute(sa.text(statement))
    with app.app_context(), app.extensions["receiver.db"].new_session() as session:
        outcome = reprocess(session, raw.id, Settings.from_config(app.config))
    assert (outcome.code, outcome.message, outcome.events) == (200, "stored", ["fault:1"])
    assert raw_events(app)[0].state == RawState.processed
    assert row_counts(app)["messages"] == 1


def test_values_longer_than_their_columns_are_refused(hooks, app):
    response = hooks.post(sms(id="long:1", mobile="9" * 300))
    assert response.status_code == 422
    assert "mobile" in response.get_json()["errors"]


def test_verification_handshake_by_get(client, app):
    with app.extensions["receiver.db"].new_session() as session:
        add_source(session, "verified", secret="verified-secret-1", validation_key="9012XXXX")
    response = client.get("/hooks/verified?token=9012XXXX&challenge=a234qwe")
    assert response.status_code == 200
    assert response.get_json() == {"challenge": "a234qwe"}
    assert client.get("/hooks/verified?token=bad&challenge=a234qwe").status_code == 401


def test_unknown_timezone_is_refused_at_start(settings):
    settings["PROVIDER_TIMEZONE"] = "Mars/Olympus"
    with pytest.raises(RuntimeError, match="PROVIDER_TIMEZONE"):
        create_app(settings)
