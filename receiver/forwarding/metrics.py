"""Forwarding's metrics, read from the database at scrape time (the same from any process):
deliveries by destination and outcome, the backlog, and the age of the oldest undelivered change."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .models import Change, Delivery, DeliveryState, Destination, DestinationState

OUTCOMES = ("delivered", "retried", "failed")


def collect(connection: sa.Connection) -> Iterator[Metric]:
    """Every forwarding metric, one family at a time."""
    destinations = connection.execute(sa.select(Destination)).all()
    pending = dict(
        connection.execute(
            sa.select(Delivery.destination_id, sa.func.count())
            .where(Delivery.state == DeliveryState.pending)
            .group_by(Delivery.destination_id)
        ).all()
    )
    oldest_delivery = dict(
        connection.execute(
            sa.select(Delivery.destination_id, sa.func.min(Change.created_at))
            .join(Change, Change.id == Delivery.change_id)
            .where(Delivery.state == DeliveryState.pending)
            .group_by(Delivery.destination_id)
        ).all()
    )
    deliveries = CounterMetricFamily(
        "receiver_forwarding_deliveries",
        "Delivery attempts by destination and outcome (delivered; retried: to try again; failed: given up)",
        labels=["destination", "outcome"],
    )
    backlog = GaugeMetricFamily(
        "receiver_forwarding_backlog", "Changes a destination has not received yet", labels=["destination"]
    )
    oldest = GaugeMetricFamily(
        "receiver_forwarding_oldest_undelivered_seconds",
        "Age of the oldest change a destination has not received yet (0 when none waits)",
        labels=["destination"],
    )
    paused = GaugeMetricFamily(
        "receiver_forwarding_paused", "1 while a destination is paused", labels=["destination"]
    )
    now = time.time()
    for d in destinations:
        totals = (d.delivered_total, d.retried_total, d.failed_total)
        for outcome, total in zip(OUTCOMES, totals, strict=True):
            deliveries.add_metric([d.name, outcome], total)
        # Changes not yet made into its deliveries wait too (a worker down, or behind).
        unfanned = connection.execute(
            sa.select(sa.func.count(), sa.func.min(Change.created_at)).where(
                sa.or_(Change.position > d.position, Change.position.is_(None)),
                Change.type.in_(d.event_types),
            )
        ).one()
        backlog.add_metric([d.name], pending.get(d.id, 0) + unfanned[0])
        times = [t for t in (oldest_delivery.get(d.id), unfanned[1]) if t is not None]
        oldest.add_metric([d.name], max(0.0, now - _epoch(min(times))) if times else 0.0)
        paused.add_metric([d.name], 1.0 if d.state == DestinationState.paused else 0.0)
    yield deliveries
    yield backlog
    yield oldest
    yield paused


def _epoch(value: object) -> float:
    assert isinstance(value, datetime)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
