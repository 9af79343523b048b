"""Delivery to real HTTP endpoints on 127.0.0.1 by the worker's forwarding loop: signed as the
Standard Webhooks reference verifies, in order per resource, through failures, throttling,
410, outages and hangs. The loop runs in a thread here; tests/test_forwarding_worker.py kills
a real worker process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from receiver.forwarding import signing
from receiver.forwarding.models import Delivery, DeliveryState, Destination
from receiver.forwarding.worker import Forwarder
from tests.payloads import SMS_DLR, VMN_INBOUND, sms
from tests.sinks import Sink

FAST = {
    "DOWNLOAD_ALLOW_HTTP": True,
    "DOWNLOAD_ALLOW_PRIVATE": True,
    "FORWARD_RETRY_BASE": 0.2,
    "FORWARD_RETRY_MAX": 0.5,
    "FORWARD_POLL_INTERVAL": 0.05,
    "FORWARD_TIMEOUT": 5.0,
}


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def fast(settings: dict[str, Any]) -> dict[str, Any]:
    settings.update(FAST)
    return settings


@pytest.fixture
def forwarder(app) -> Iterator[Forwarder]:
    loop = Forwarder(app.extensions["receiver.db"].sessionmaker, app.config)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run_forever, args=(stop,), daemon=True)
    thread.start()
    yield loop
    stop.set()
    thread.join(10)


@pytest.fixture
def sinks() -> Iterator[list[Sink]]:
    made: list[Sink] = []
    yield made
    for sink in made:
        if sink.hold is not None:
            sink.hold.set()
        sink.stop()


def add(runner, name: str, sink: Sink, *options: str) -> str:
    answer = runner.invoke(args=["destinations", "add", name, "--url", sink.url, *options])
    assert answer.exit_code == 0, answer.output
    return answer.output.splitlines()[-1]


def deliveries(app, name: str) -> list[Delivery]:
    with app.extensions["receiver.db"].new_session() as session:
        return list(
            session.scalars(
                sa.select(Delivery)
                .join(Destination)
                .where(Destination.name == name)
                .order_by(Delivery.position)
            )
        )


def destination(app, name: str) -> Destination:
    with app.extensions["receiver.db"].new_session() as session:
        return session.scalars(sa.select(Destination).where(Destination.name == name)).one()


def test_changes_arrive_signed_in_order_with_the_resource_as_the_api_showed_it(
    fast, app, hooks, api, runner, sinks, forwarder
):
    sink = Sink()
    sinks.append(sink)
    secret = add(runner, "crm", sink)
    hooks.post(sms(status="SENT", deliv_at=None, deliv_time=None))
    hooks.post(VMN_INBOUND)
    hooks.post(SMS_DLR)
    wait_for("three webhooks", lambda: len(sink.received) >= 3)
    feed = {change["id"]: change for change in api("/api/v1/changes").get_json()["data"]}
    verifier = Webhook(secret)
    assert sorted(sink.ids()) == sorted(feed)
    for received in sink.received:
        change = feed[received.id]
        assert verifier.verify(received.body, received.headers) == {
            "type": change["type"],
            "timestamp": change["timestamp"],
            "data": change["data"],
        }
        assert received.headers["content-type"] == "application/json"
    statuses = [b["data"]["status"] for b in sink.bodies() if b["type"] == "message.status"]
    assert statuses == ["sent", "delivered"]  # the order committed, per message
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(sink.received[0].body, sink.received[0].headers)
    wait_for(
        "all marked delivered",
        lambda: all(d.state == DeliveryState.delivered for d in deliveries(app, "crm")),
    )
    assert destination(app, "crm").delivered_total == 3


def test_only_the_event_types_asked_for_are_sent(fast, app, hooks, runner, sinks, forwarder):
    sink = Sink()
    sinks.append(sink)
    add(runner, "inbox", sink, "--events", "inbound")
    hooks.post(SMS_DLR)
    hooks.post(VMN_INBOUND)
    wait_for("the inbound message", lambda: sink.received)
    wait_for("fan-out done", lambda: destination(app, "inbox").position >= 2)
    time.sleep(0.3)
    assert [b["type"] for b in sink.bodies()] == ["inbound"]


def test_a_failing_destination_is_retried_soon_with_the_same_id_keeping_order(
    fast, app, hooks, runner, sinks, forwarder
):
    # The first two attempts fail (500, then no answer the server closes on); then all is well.
    sink = Sink(lambda n, _r: (500, {}) if n < 2 else (200, {}))
    sinks.append(sink)
    add(runner, "flaky", sink)
    hooks.post(sms(status="SENT", deliv_at=None, deliv_time=None))
    hooks.post(SMS_DLR)
    wait_for("both delivered", lambda: [d.state for d in deliveries(app, "flaky")] == ["delivered"] * 2)
    ids = sink.ids()
    first = ids[0]
    assert ids[:3] == [first, first, first]  # the first change, three times, before the second
    assert len(set(ids)) == 2 and ids[-1] != first
    gap = sink.received[1].at - sink.received[0].at
    assert gap < 5.0  # the first retry comes within 5 s
    assert destination(app, "flaky").retried_total == 2


def test_a_429_holds_the_destination_for_its_retry_after(fast, app, hooks, runner, sinks, forwarder):
    sink = Sink(lambda n, _r: (429, {"Retry-After": "2"}) if n == 0 else (200, {}))
    sinks.append(sink)
    add(runner, "busy", sink)
    hooks.post(SMS_DLR)
    wait_for("two attempts", lambda: len(sink.received) >= 2)
    assert sink.received[1].at - sink.received[0].at >= 1.9
    assert destination(app, "busy").throttled_until is not None


def test_a_410_pauses_the_destination_and_resume_delivers_what_waited(
    fast, app, hooks, runner, sinks, forwarder
):
    gone = {"yes": True}
    sink = Sink(lambda _n, _r: (410, {}) if gone["yes"] else (200, {}))
    sinks.append(sink)
    add(runner, "old", sink)
    hooks.post(SMS_DLR)
    wait_for("paused", lambda: destination(app, "old").state == "paused")
    hooks.post(VMN_INBOUND)
    assert "backlog 2" in runner.invoke(args=["destinations", "list"]).output
    time.sleep(0.5)
    assert len(sink.received) == 1  # nothing is sent while paused
    gone["yes"] = False
    assert runner.invoke(args=["destinations", "resume", "old"]).exit_code == 0
    wait_for("both delivered", lambda: [d.state for d in deliveries(app, "old")] == ["delivered"] * 2)


def test_a_hung_destination_delays_neither_another_nor_ingest(fast, app, hooks, runner, sinks, forwarder):
    hung, fine = Sink(), Sink()
    hung.hold = threading.Event()
    sinks.extend([hung, fine])
    add(runner, "hung", hung, "--concurrency", "1")
    add(runner, "fine", fine)
    for n in range(20):
        assert hooks.post(sms(id=f"m{n}")).status_code == 200
    wait_for("the healthy destination gets all 20", lambda: len(fine.received) == 20)
    assert len(hung.received) == 1  # still holding its first request
    hung.hold.set()
    wait_for("the hung one catches up", lambda: len(set(hung.ids())) == 20)


def test_a_destination_that_vanishes_and_comes_back_gets_everything(
    fast, app, hooks, runner, sinks, forwarder
):
    sink = Sink()
    sinks.append(sink)
    add(runner, "flappy", sink)
    sink.stop()  # the port refuses connections
    for n in range(5):
        hooks.post(sms(id=f"m{n}"))
    wait_for("failed attempts", lambda: destination(app, "flappy").retried_total >= 5)
    assert all(d.last_error and d.state == "pending" for d in deliveries(app, "flappy"))
    sink.start()
    wait_for("all delivered", lambda: [d.state for d in deliveries(app, "flappy")] == ["delivered"] * 5)
    assert sorted(b["data"]["id"] for b in sink.bodies()) == [f"m{n}" for n in range(5)]


def test_after_the_retry_period_a_delivery_fails_and_replay_sends_it_again(
    fast, settings, app, hooks, runner, sinks, forwarder
):
    app.config["FORWARD_RETRY_FOR"] = 0.5
    forwarder.policy = forwarder.policy.__class__(0.2, 0.5, 0.5, forwarder.policy.lease)
    down = {"yes": True}
    sink = Sink(lambda _n, _r: (503, {}) if down["yes"] else (200, {}))
    sinks.append(sink)
    add(runner, "late", sink)
    hooks.post(SMS_DLR)
    wait_for("failed", lambda: [d.state for d in deliveries(app, "late")] == ["failed"])
    assert "failed 1" in runner.invoke(args=["destinations", "list"]).output
    down["yes"] = False
    replayed = runner.invoke(args=["destinations", "replay", "late", "--since", "2020-01-01T00:00:00Z"])
    assert replayed.exit_code == 0 and "1 change queued again" in replayed.output
    wait_for("delivered", lambda: [d.state for d in deliveries(app, "late")] == ["delivered"])
    assert len(set(sink.ids())) == 1  # the same webhook-id throughout


def test_during_a_rotation_both_secrets_verify(fast, app, hooks, runner, sinks, forwarder):
    sink = Sink()
    sinks.append(sink)
    old = add(runner, "crm", sink)
    new = runner.invoke(args=["destinations", "rotate", "crm"]).output.splitlines()[-1]
    hooks.post(SMS_DLR)
    wait_for("the webhook", lambda: sink.received)
    received = sink.received[0]
    assert len(received.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(received.body, received.headers)
