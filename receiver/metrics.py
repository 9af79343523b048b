"""Prometheus metrics (`/metrics`), correct under several gunicorn workers.

Counters and histograms live in this process; with `PROMETHEUS_MULTIPROC_DIR` set (as the
Procfile and `receiver run` do, before prometheus-client is imported) every process writes its
samples to files there, and a scrape, whichever worker answers it, adds up all of them. The
gunicorn master empties that folder when it starts and drops a dead worker's live samples
(`receiver/gunicorn_conf.py`). Gauges of shared state (recordings by state, raw events waiting
for replay, the job queue) are read from the database and the queue at scrape time, so they are
the same whichever process answers and need no per-process bookkeeping.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .errors import error_response

if TYPE_CHECKING:
    from .ingest.service import Outcome

log = logging.getLogger(__name__)

REQUESTS = Counter("receiver_http_requests_total", "HTTP requests", ["endpoint", "method", "status"])
LATENCY = Histogram(
    "receiver_http_request_duration_seconds",
    "HTTP request duration (to the first byte of a streamed answer)",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
INGEST = Counter(
    "receiver_ingest_events_total",
    "Webhook requests by kind and outcome (stored, duplicate, accepted, quarantined, rejected)",
    ["kind", "outcome"],
)
AUTH_FAILURES = Counter("receiver_auth_failures_total", "Failed webhook checks", ["source"])
WEBHOOKS = Counter(
    "receiver_webhooks_received_total",
    "Authenticated webhook requests stored, by source and kind of event (one for each kind it held)",
    ["source", "kind"],
)
# The newest across processes: any worker may have taken a source's latest webhook.
LAST_WEBHOOK = Gauge(
    "receiver_last_webhook_timestamp_seconds",
    "Unix time of the latest authenticated webhook request from each source",
    ["source"],
    multiprocess_mode="max",
)
OUTCOMES = Counter(
    "receiver_delivery_outcomes_total",
    "New status reports of outbound messages stored (webhook or replay), by channel and canonical status",
    ["channel", "status"],
)
REPLAYS = Counter("receiver_replays_total", "Raw events replayed, by outcome", ["outcome"])

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_HOOK_KINDS = frozenset({"sms-status", "sms-inbound", "whatsapp", "rcs", "viber", "voice", "unsubscription"})


_CHANNELS = frozenset({"sms", "whatsapp", "rcs", "viber"})


def count_ingest(outcome: Outcome, source: str) -> None:
    """Count one stored request from an authenticated source under each kind it held."""
    kinds = set(outcome.kinds) or {None}
    for kind in kinds:
        INGEST.labels(kind=kind or "unrecognised", outcome=outcome.outcome).inc()
        WEBHOOKS.labels(source=source, kind=kind or "unrecognised").inc()
    LAST_WEBHOOK.labels(source=source).set(time.time())
    count_statuses(outcome)


def count_statuses(outcome: Outcome) -> None:
    """Count the new status reports a request stored, by channel and canonical status."""
    for channel, status in outcome.statuses:
        # The channel comes from the payload: anything unexpected shares one label value.
        OUTCOMES.labels(channel=channel if channel in _CHANNELS else "other", status=status).inc()


def _count_rejected() -> None:
    """A webhook refused before anything was stored (401, 404, 413, 503...): outcome `rejected`."""
    kind = (request.view_args or {}).get("kind")
    INGEST.labels(kind=kind if kind in _HOOK_KINDS else "unknown", outcome="rejected").inc()


class DatabaseCollector(Collector):
    """Recordings by state, the oldest waiting recording, raw events waiting, the job queue."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._from_database()
        except sa.exc.SQLAlchemyError as exc:
            log.warning("metrics: database unavailable (%s)", type(exc).__name__)
        try:
            yield from self._queue()
        except Exception as exc:  # a queue that cannot answer must not break the scrape
            log.warning("metrics: job queue unavailable (%s)", type(exc).__name__)

    def _from_database(self) -> Iterator[Metric]:
        from .models import RawEvent, RawState, Recording, RecordingState

        waiting = [s for s in RecordingState if s not in (RecordingState.stored, RecordingState.failed)]
        replayable = [RawState.pending, RawState.quarantined]
        engine = self.app.extensions["receiver.db"].engine
        with engine.connect() as connection:
            recordings = dict(
                connection.execute(
                    sa.select(Recording.state, sa.func.count()).group_by(Recording.state)
                ).all()
            )
            oldest = connection.execute(
                sa.select(Recording.created_at)
                .where(Recording.state.in_(waiting))
                .order_by(Recording.created_at)
                .limit(1)
            ).scalar()
            raw = dict(
                connection.execute(
                    sa.select(RawEvent.state, sa.func.count())
                    .where(RawEvent.state.in_(replayable))
                    .group_by(RawEvent.state)
                ).all()
            )
        by_state = GaugeMetricFamily("receiver_recordings", "Recordings by state", labels=["state"])
        for state in RecordingState:
            by_state.add_metric([state.value], recordings.get(state, 0))
        yield by_state
        age = GaugeMetricFamily(
            "receiver_recording_oldest_pending_seconds",
            "Age of the oldest recording not yet stored or failed (0 when none waits)",
        )
        age.add_metric([], _age(oldest))
        yield age
        events = GaugeMetricFamily(
            "receiver_raw_events_waiting", "Raw events waiting for replay", labels=["state"]
        )
        for raw_state in replayable:
            events.add_metric([raw_state.value], raw.get(raw_state, 0))
        yield events

    def _queue(self) -> Iterator[Metric]:
        queue = self.app.extensions.get("receiver.huey")
        if queue is None:
            return
        depth = GaugeMetricFamily("receiver_queue_depth", "Jobs waiting in the worker queue")
        depth.add_metric([], float(queue.pending_count()))
        yield depth


def _age(created: datetime | None) -> float:
    if created is None:
        return 0.0
    if created.tzinfo is None:  # SQLite hands back naive UTC
        created = created.replace(tzinfo=UTC)
    return max(0.0, time.time() - created.timestamp())


def _process_registry() -> Any:
    """This process's metrics, or every process's when they share a multiprocess folder."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_view() -> Response | tuple[Response, int]:
    """The Prometheus text format; Bearer `METRICS_TOKEN` when that is set."""
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return error_response(401, "missing or invalid metrics token")
    from .reconcile.metrics import ReconcileCollector

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    shared = CollectorRegistry()
    shared.register(DatabaseCollector(app))
    shared.register(ReconcileCollector(app))
    payload = generate_latest(_process_registry()) + generate_latest(shared)
    return Response(payload, mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    app.add_url_rule("/metrics", "metrics", metrics_view)

    @app.before_request
    def start_timer() -> None:
        g.metrics_start = time.perf_counter()

    @app.after_request
    def record(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        REQUESTS.labels(endpoint=endpoint, method=method, status=response.status_code).inc()
        started = g.get("metrics_start")
        if started is not None:
            LATENCY.labels(endpoint=endpoint).observe(time.perf_counter() - started)
        if (
            request.endpoint == "hooks.receive"
            and response.status_code >= 400
            and response.status_code != 422
        ):
            _count_rejected()
        return response
