"""/metrics: webhooks received by source and kind, the last webhook per source, delivery outcomes."""

from __future__ import annotations

import time
from typing import Any

from tests.payloads import VMN_INBOUND, channel_status, sms
from tests.test_metrics import _scrape, _value


def test_webhooks_by_source_and_kind_and_the_time_of_the_last(client: Any, hooks: Any) -> None:
    before = _scrape(client)
    started = time.time()
    hooks.post(sms(id="metrics-1"))
    hooks.post(sms(id="metrics-1"))  # a retry: received all the same
    hooks.post(VMN_INBOUND)
    client.post("/hooks/portal", json=sms(id="metrics-2"))  # no secret: not received from portal
    after = _scrape(client)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("receiver_webhooks_received_total", source="portal", kind="sms-status") == 2
    assert delta("receiver_webhooks_received_total", source="portal", kind="inbound") == 1
    last = _value(after, "receiver_last_webhook_timestamp_seconds", source="portal")
    assert started <= last <= time.time()


def test_delivery_outcomes_by_channel_and_canonical_status(client: Any, hooks: Any) -> None:
    before = _scrape(client)
    hooks.post(sms(id="outcome-1", status="DELIVRD"))
    hooks.post(sms(id="outcome-1", status="DELIVRD"))  # the same report again: not a new outcome
    hooks.post([sms(id="outcome-2", status="DNDNUMB"), sms(id="outcome-3", status="DLT-TEMPLATE")])
    hooks.post(channel_status("whatsapp", "read", "wa-outcome-1", "1701086585"))
    odd = channel_status("whatsapp", "delivered", "odd-1", "1701086585")
    odd["payload"]["channel"] = "fax"  # a channel the payload names: counted, under one label value
    assert hooks.post(odd).status_code == 200
    after = _scrape(client)

    def delta(channel: str, status: str) -> float:
        name = "receiver_delivery_outcomes_total"
        return _value(after, name, channel=channel, status=status) - _value(
            before, name, channel=channel, status=status
        )

    assert delta("sms", "delivered") == 1
    assert delta("sms", "rejected") == 2
    assert delta("whatsapp", "read") == 1
    assert delta("other", "delivered") == 1
