"""Prometheus metrics (`/metrics`), correct under several gunicorn workers.

With `PROMETHEUS_MULTIPROC_DIR` set (as `receiver run` and the Procfile do), every worker writes
its samples there and a scrape adds them up; recording gauges are read from the database at
scrape time, so they are the same whichever process answers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import sqlalchemy as sa
from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .errors import error_response

if TYPE_CHECKING:
    from .ingest import Outcome

REQUESTS = Counter("receiver_http_requests_total", "HTTP requests", ["endpoint", "method", "status"])
LATENCY = Histogram(
    "receiver_http_request_duration_seconds",
    "HTTP request duration",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
INGEST = Counter("receiver_ingest_events_total", "Webhook requests by kind and outcome", ["kind", "outcome"])
AUTH_FAILURES = Counter("receiver_auth_failures_total", "Failed webhook checks", ["source"])
INGEST_REJECTED = Counter("receiver_ingest_rejected_total", "Webhook requests refused", ["reason"])


def count_ingest(outcome: Outcome) -> None:
    """Count one stored request under each kind it held."""
    kinds = set(outcome.kinds) or {None}
    for kind in kinds:
        INGEST.labels(kind=kind or "unrecognised", outcome=outcome.outcome).inc()


class DatabaseCollector(Collector):
    """Recording states, queue depth and the age of the oldest pending recording, from SQL."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        from .models import Recording, RecordingState

        by_state = GaugeMetricFamily("receiver_recordings", "Recordings by state", labels=["state"])
        oldest = GaugeMetricFamily(
            "receiver_recording_oldest_pending_seconds",
            "Age of the oldest recording not yet stored or failed",
        )
        engine = self.app.extensions["receiver.db"].engine
        waiting = [s.value for s in RecordingState if s not in ("stored", "failed")]
        with engine.connect() as connection:
            counts = dict(
                connection.execute(
                    sa.select(Recording.state, sa.func.count()).group_by(Recording.state)
                ).all()
            )
            first = connection.execute(
                sa.select(sa.func.min(Recording.created_at)).where(Recording.state.in_(waiting))
            ).scalar()
        for state in RecordingState:
            by_state.add_metric([state.value], counts.get(state, 0))
        yield by_state
        if first is not None:
            from .db import UTCDateTime

            first = UTCDateTime().process_result_value(first, engine.dialect)
            assert first is not None
            oldest.add_metric([], max(0.0, time.time() - first.timestamp()))
        else:
            oldest.add_metric([], 0.0)
        yield oldest
        yield from _queue_depth(self.app)


def _queue_depth(app: Flask) -> Iterator[Metric]:
    queue = app.extensions.get("receiver.huey")
    depth = GaugeMetricFamily("receiver_queue_depth", "Jobs waiting in the worker queue")
    if queue is not None:
        depth.add_metric([], float(queue.pending_count()))
        yield depth


def metrics_view() -> Response | tuple[Response, int]:
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        import hmac

        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
            return error_response(401, "missing or invalid metrics token")
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    payload = generate_latest(registry)
    try:
        extra = CollectorRegistry()
        extra.register(DatabaseCollector(current_app._get_current_object()))  # type: ignore[attr-defined]
        payload += generate_latest(extra)
    except sa.exc.SQLAlchemyError:
        current_app.logger.warning("metrics: database unavailable")
    return Response(payload, mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    app.add_url_rule("/metrics", "metrics", metrics_view)

    @app.before_request
    def start_timer() -> None:
        g.metrics_start = time.perf_counter()

    @app.after_request
    def record(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        REQUESTS.labels(endpoint=endpoint, method=request.method, status=response.status_code).inc()
        started = g.get("metrics_start")
        if started is not None:
            LATENCY.labels(endpoint=endpoint).observe(time.perf_counter() - started)
        return response
