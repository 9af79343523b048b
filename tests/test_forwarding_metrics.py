"""Forwarding's metrics at /metrics, and the alert rules that read them."""

from __future__ import annotations

import re
import time
from pathlib import Path

import yaml

from receiver.forwarding.worker import Forwarder
from tests.payloads import SMS_DLR
from tests.sinks import Sink
from tests.test_forwarding_delivery import FAST

DELIVERIES = "receiver_forwarding_deliveries_total"
ALERTS = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "alerts.yml"


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{re.escape(name)}{{{re.escape(wanted)}}} (\S+)$", text, re.M)
    assert match, f"no {name}{{{wanted}}} in\n{text}"
    return float(match.group(1))


def test_backlog_age_and_deliveries_by_outcome(settings, app, client, hooks, runner):
    settings.update(FAST)
    app.config.update(FAST)
    sink = Sink()
    try:
        assert runner.invoke(args=["destinations", "add", "crm", "--url", sink.url]).exit_code == 0
        hooks.post(SMS_DLR)
        time.sleep(0.05)
        text = client.get("/metrics").get_data(as_text=True)
        assert sample(text, "receiver_forwarding_backlog", destination="crm") == 1
        assert sample(text, "receiver_forwarding_oldest_undelivered_seconds", destination="crm") > 0
        delivered = sample(text, DELIVERIES, destination="crm", outcome="delivered")
        assert delivered == 0
        forwarder = Forwarder(app.extensions["receiver.db"].sessionmaker, app.config)
        deadline = time.monotonic() + 20
        while forwarder.results.empty() and time.monotonic() < deadline:
            forwarder.tick()
            time.sleep(0.05)
        forwarder.write_results()
        text = client.get("/metrics").get_data(as_text=True)
        delivered = sample(text, DELIVERIES, destination="crm", outcome="delivered")
        assert delivered == 1
        assert sample(text, "receiver_forwarding_backlog", destination="crm") == 0
        assert sample(text, "receiver_forwarding_oldest_undelivered_seconds", destination="crm") == 0
        assert sample(text, "receiver_forwarding_paused", destination="crm") == 0
    finally:
        sink.stop()


def test_every_metric_the_forwarding_alerts_read_is_exported(app, client, runner, settings):
    app.config.update(FAST)
    assert runner.invoke(args=["destinations", "add", "crm", "--url", "http://127.0.0.1:9/"]).exit_code == 0
    exported = set(re.findall(r"^([a-z_]+)[{ ]", client.get("/metrics").get_data(as_text=True), re.M))
    groups = {group["name"]: group for group in yaml.safe_load(ALERTS.read_text())["groups"]}
    rules = groups["receiver-forwarding"]["rules"]
    assert rules
    for rule in rules:
        for name in re.findall(r"\b(receiver_[a-z_]+)", rule["expr"]):
            assert name in exported, f"{rule['alert']} reads {name}, which /metrics does not export"
