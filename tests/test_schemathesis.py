"""Schemathesis against the app's own OpenAPI document: no 500s, every answer matches its schema.

Each operation gets a bounded number of generated requests (valid and invalid), sent with a real
API key to the app in process, over a database holding a few rows of every kind.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation

from tests.payloads import (
    C2C,
    CONTACT_CREATED,
    OBD,
    RCS_INBOUND_MEDIA,
    SMS_DLR,
    UNSUBSCRIPTION,
    VMN_INBOUND,
    channel_status,
    sms,
)

EXAMPLES_PER_OPERATION = 40
# The query API's operations (SPEC §6).
QUERY_API = (
    "/api/v1/messages",
    "/api/v1/inbound",
    "/api/v1/calls",
    "/api/v1/events",
    "/api/v1/recordings",
    "/api/v1/opt-outs",
    "/api/v1/contacts",
)


@pytest.fixture
def seeded_app(app, hooks):
    for payload in (
        SMS_DLR,
        sms(id="st:2", status="UNDELIV"),
        VMN_INBOUND,
        RCS_INBOUND_MEDIA,
        OBD,
        C2C,
        UNSUBSCRIPTION,
        CONTACT_CREATED,
    ):
        hooks.post(payload)
    hooks.post(dict(UNSUBSCRIPTION, id=9), path="/hooks/portal/unsubscription?channel=sms")
    hooks.post(channel_status("whatsapp", "read", "st:3", "2024-01-01T10:00:00Z"))
    hooks.post(b"{broken", headers={"Content-Type": "application/json"})
    return app


# schemathesis' own pytest plugin (`from_fixture`) needs a pytest internal that pytest 9 removed,
# so each operation's strategy runs under hypothesis here, with the same checks.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_api_follows_its_openapi_document(seeded_app, operate_key, mode):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", seeded_app)
    headers = {"Authorization": f"Bearer {operate_key}"}  # may also replay and retry
    operations = [
        operation
        for operation in (result.ok() for result in schema.get_all_operations())
        if operation.path.startswith(QUERY_API)
    ]
    assert len(operations) == 15

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            if mode is GenerationMode.POSITIVE and case.query:
                # Valid by the document, refused by design: a cursor receiver did not issue, and
                # `limit` on a CSV export (which holds every row). tests/test_api_*.py cover both.
                case.query.pop("cursor", None)
                if case.query.get("format") == "csv":
                    case.query.pop("limit", None)
            if _headers_mutated(case):
                case.call_and_validate()  # no key, or a wrong one: must be refused
            else:
                case.call_and_validate(headers={**(case.headers or {}), **headers})

        try:
            check()
        except Exception as exc:
            raise AssertionError(f"{operation.method.upper()} {operation.path}: {exc}") from exc


def _headers_mutated(case) -> bool:
    """Whether schemathesis made this case's headers invalid on purpose (e.g. dropped the key)."""
    components = case.meta.components if case.meta else {}
    header = components.get(ParameterLocation.HEADER)
    return header is not None and header.mode is GenerationMode.NEGATIVE


def test_document_and_docs_page_are_public_and_local(client):
    document = client.get("/api/v1/openapi.json")
    assert document.status_code == 200
    paths = document.get_json()["paths"]
    for path in (
        "/api/v1/messages",
        "/api/v1/messages/{message_id}",
        "/api/v1/inbound",
        "/api/v1/calls",
        "/api/v1/calls/{call_id}",
        "/api/v1/events",
        "/api/v1/events/{event_id}/replay",
        "/api/v1/opt-outs",
        "/api/v1/opt-outs/check",
        "/api/v1/recordings",
        "/api/v1/recordings/{recording_id}/retry",
        "/api/v1/contacts",
    ):
        assert path in paths
    assert "text/csv" in paths["/api/v1/messages"]["get"]["responses"]["200"]["content"]
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html  # no CDN: the page works offline
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        assert f"/api/v1/docs/assets/{asset}" in html
        response = client.get(f"/api/v1/docs/assets/{asset}")
        assert response.status_code == 200 and len(response.data) > 1000
