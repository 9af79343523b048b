"""The webhook routes, served in front of Flask (receiver.api.hooks): the same answers, methods,
errors and metrics as any route, without Flask's request machinery."""

from __future__ import annotations

from flask import request_started
from prometheus_client.parser import text_string_to_metric_families

from tests.payloads import SMS_DLR


def _requests_total(client) -> dict[tuple[str, str, str], float]:
    text = client.get("/metrics").get_data(as_text=True)
    return {
        (sample.labels["endpoint"], sample.labels["method"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "receiver_http_requests_total"
    }


def test_a_webhook_is_stored_without_a_flask_request(app, hooks, client):
    started = []

    def seen(sender, **extra):
        started.append(extra)

    request_started.connect(seen, app)
    try:
        answer = hooks.post(SMS_DLR)
        assert answer.status_code == 200 and answer.get_json()["message"] == "stored"
        assert started == []
        client.get("/healthz")
        assert len(started) == 1  # any other route is Flask's
    finally:
        request_started.disconnect(seen, app)


def test_the_answer_is_json_as_jsonify_writes_it(hooks):
    answer = hooks.post(SMS_DLR)
    assert answer.headers["Content-Type"] == "application/json"
    assert int(answer.headers["Content-Length"]) == len(answer.data)
    assert answer.data.endswith(b"\n")
    assert answer.get_json() == {
        "status": "OK",
        "code": 200,
        "message": "stored",
        "events": [SMS_DLR["id"]],
    }


def test_head_answers_as_get_without_a_body(client, source_secret):
    query = f"/hooks/portal?secret={source_secret}&challenge=abc"
    get, head = client.get(query), client.head(query)
    assert (head.status_code, head.headers["Content-Type"]) == (get.status_code, get.headers["Content-Type"])
    assert head.headers["Content-Length"] == get.headers["Content-Length"]
    assert head.data == b""


def test_options_and_other_methods_name_the_allowed_ones(client):
    options = client.options("/hooks/portal")
    assert options.status_code == 200 and options.data == b""
    allowed = {"GET", "HEAD", "OPTIONS", "POST", "PUT"}
    assert set(options.headers["Allow"].split(", ")) == allowed
    for method in ("DELETE", "PATCH"):
        answer = client.open("/hooks/portal/sms-status", method=method)
        assert answer.status_code == 405
        assert answer.get_json() == {"status": "ERROR", "code": 405, "message": "method not allowed"}
        assert set(answer.headers["Allow"].split(", ")) == allowed


def test_paths_other_than_the_routes_are_flasks(client, hooks):
    assert hooks.post(SMS_DLR, path="/hooks/portal/").status_code == 404
    assert hooks.post(SMS_DLR, path="/hooks/portal/sms-status/more").status_code == 404
    assert hooks.post(SMS_DLR, path="/hooks/").status_code == 404
    assert hooks.post(SMS_DLR, path="/hooks//portal").status_code == 404


def test_a_source_name_is_read_as_utf8_as_flask_reads_paths(client):
    answer = client.post("/hooks/caf%C3%A9", json=SMS_DLR)
    assert answer.status_code == 404
    assert answer.get_json()["message"] == "unknown source 'café'"
    broken = client.post("/hooks/%FF", json=SMS_DLR)
    assert broken.get_json()["message"] == "unknown source '\ufffd'"


def test_webhooks_are_counted_by_route_method_and_status(client, hooks):
    before, rejected_before = _requests_total(client), _rejected(client)
    hooks.post(SMS_DLR)
    hooks.post(SMS_DLR, path="/hooks/portal/sms-status")
    client.post("/hooks/portal/voice", json=SMS_DLR)  # no secret: a rejected webhook
    client.delete("/hooks/portal/voice")  # not a webhook: not a rejected one
    client.options("/hooks/portal")
    after = _requests_total(client)
    for labels in (
        ("/hooks/<source>", "POST", "200"),
        ("/hooks/<source>/<kind>", "POST", "200"),
        ("/hooks/<source>/<kind>", "POST", "401"),
        ("/hooks/<source>/<kind>", "DELETE", "405"),
        ("/hooks/<source>", "OPTIONS", "200"),
    ):
        assert after.get(labels, 0) - before.get(labels, 0) == 1, labels
    assert _rejected(client) - rejected_before == 1


def _rejected(client) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "receiver_ingest_events_total"
        and sample.labels == {"kind": "voice", "outcome": "rejected"}
    )
