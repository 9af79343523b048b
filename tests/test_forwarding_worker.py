"""Forwarding in real `receiver worker` processes: one killed in the middle of a delivery, and
changes committed while no worker ran."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from receiver.forwarding.models import Delivery, DeliveryState
from tests.payloads import sms
from tests.provider_stub import worker_env
from tests.sinks import Sink
from tests.test_forwarding_delivery import FAST
from tests.test_worker import Worker, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def fast(settings: dict[str, Any]) -> dict[str, Any]:
    settings.update(FAST)
    return settings


@pytest.fixture
def workers(settings: dict[str, Any], tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def start(settings: dict[str, Any], tmp_path: Path, workers: list[Worker]) -> Worker:
    env = worker_env(settings, **{**FAST, "FORWARD_TIMEOUT": 3, "FORWARD_LEASE": 1})
    worker = Worker(env, tmp_path, tmp_path / "worker.log")
    workers.append(worker)
    return worker


def states(app) -> list[str]:
    with app.extensions["receiver.db"].new_session() as session:
        return [d.state for d in session.scalars(sa.select(Delivery).order_by(Delivery.position))]


def test_a_worker_killed_mid_delivery_leaves_it_to_the_next_with_the_same_id(
    fast, settings, app, hooks, runner, workers, tmp_path
):
    sink = Sink()
    sink.hold = threading.Event()
    try:
        added = runner.invoke(args=["destinations", "add", "crm", "--url", sink.url])
        assert added.exit_code == 0, added.output
        secret = added.output.splitlines()[-1]
        # Committed while no worker runs: found all the same once one starts.
        for n in range(3):
            assert hooks.post(sms(id=f"m{n}")).status_code == 200
        first = start(settings, tmp_path, workers)
        wait_for("a request under way", sink.arrived.is_set, log=first.log)
        first.kill()
        held = sink.ids()
        assert held and states(app).count(DeliveryState.delivered) == 0
        sink.hold.set()  # the killed worker's requests are answered to nobody
        second = start(settings, tmp_path, workers)
        wait_for("every change delivered", lambda: states(app) == ["delivered"] * 3, log=second.log)
        ids = sink.ids()
        assert set(ids) == set(held) | set(ids) and len(set(ids)) == 3
        assert all(ids.count(i) >= 2 for i in held)  # sent again, with the same webhook-id
        for received in sink.received:
            Webhook(secret).verify(received.body, received.headers)
    finally:
        sink.hold.set()
        sink.stop()
