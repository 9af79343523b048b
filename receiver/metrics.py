"""Prometheus metrics (`/metrics`), correct under several gunicorn workers.

A request's counts (requests, latency, webhooks by kind and outcome) are added up in this
process's memory (`Pending`) and written to prometheus-client's counters and histograms each
second, when the process has no request left in flight, before a scrape it answers, and when it
exits: not a write and a lock in a shared file for every increment.

Counters and histograms live in this process; with `PROMETHEUS_MULTIPROC_DIR` set (as the
Procfile and `receiver run` do, before prometheus-client is imported) every process writes its
samples to files there, and a scrape, whichever worker answers it, adds up all of them. The
gunicorn master empties that folder when it starts and drops a dead worker's live samples
(`receiver/gunicorn_conf.py`). Gauges of shared state (recordings by state, raw events waiting
for replay, the job queue) are read from the database and the queue at scrape time, so they are
the same whichever process answers and need no per-process bookkeeping.
"""

from __future__ import annotations

import atexit
import bisect
import hmac
import logging
import os
import threading
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
from .ingest.payloads import URL_KINDS
from .models import REPLAYABLE_RAW, RawEvent, RecordingState
from .recordings import status as recordings_status

if TYPE_CHECKING:
    from .ingest.store import Outcome

log = logging.getLogger(__name__)

REQUESTS = Counter("receiver_http_requests_total", "HTTP requests", ["endpoint", "method", "status"])
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
LATENCY = Histogram(
    "receiver_http_request_duration_seconds",
    "HTTP request duration (to the first byte of a streamed answer)",
    ["endpoint"],
    buckets=_LATENCY_BUCKETS,
)
INGEST = Counter(
    "receiver_ingest_events_total",
    "Webhook requests by kind and outcome (stored, duplicate, accepted, quarantined, rejected)",
    ["kind", "outcome"],
)
AUTH_FAILURES = Counter("receiver_auth_failures_total", "Failed webhook checks", ["source"])
REPLAYS = Counter("receiver_replays_total", "Raw events replayed, by outcome", ["outcome"])
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
_CHANNELS = frozenset({"sms", "whatsapp", "rcs", "viber"})

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Pending:
    """Counts and observations of this process not yet written to prometheus-client."""

    FLUSH_SECONDS = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[Counter, tuple[str, ...]], float] = {}
        self._observed: dict[tuple[str, ...], list[float]] = {}  # latency: bucket counts, then sum
        self._latest: dict[tuple[Gauge, tuple[str, ...]], float] = {}  # gauges: the newest value
        self._in_flight = 0
        self._flusher_pid: int | None = None

    def count(self, counter: Counter, *labels: str) -> None:
        key = (counter, labels)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0.0) + 1
        self._start_flusher()

    def set_latest(self, gauge: Gauge, value: float, *labels: str) -> None:
        """A gauge's new value (such as a time), written at the next flush."""
        with self._lock:
            self._latest[(gauge, labels)] = value
        self._start_flusher()

    def observe_latency(self, endpoint: str, seconds: float) -> None:
        index = bisect.bisect_left(_LATENCY_BUCKETS, seconds)  # len(buckets): +Inf
        with self._lock:
            row = self._observed.get((endpoint,))
            if row is None:
                row = self._observed[(endpoint,)] = [0.0] * (len(_LATENCY_BUCKETS) + 2)
            row[index] += 1
            row[-1] += seconds

    def started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def finished(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def idle(self) -> bool:
        """Whether the request finishing is the only one in flight."""
        return self._in_flight <= 1

    def flush(self) -> None:
        """Write every pending count to prometheus-client (its shared files, under gunicorn)."""
        with self._lock:
            counts, self._counts = self._counts, {}
            observed, self._observed = self._observed, {}
            latest, self._latest = self._latest, {}
        for (gauge, labels), value in latest.items():
            gauge.labels(*labels).set(value)
        for (counter, labels), amount in counts.items():
            counter.labels(*labels).inc(amount)
        for labels, row in observed.items():
            child = LATENCY.labels(*labels)
            # prometheus-client's own histogram parts: a bucket's count and the sum, each added
            # once a flush rather than once an observation.
            for index, amount in enumerate(row[:-1]):
                if amount:
                    child._buckets[index].inc(amount)
            child._sum.inc(row[-1])

    def _start_flusher(self) -> None:
        pid = os.getpid()
        if self._flusher_pid == pid:
            return
        with self._lock:
            if self._flusher_pid == pid:
                return
            self._flusher_pid = pid
        threading.Thread(target=self._flush_each_second, name="metrics-flush", daemon=True).start()

    def _flush_each_second(self) -> None:
        while True:
            time.sleep(self.FLUSH_SECONDS)
            try:
                self.flush()
            except Exception:  # a full disk must not end the flushing for good
                log.exception("metrics: could not write the counts")


PENDING = Pending()
atexit.register(PENDING.flush)


def count_ingest(outcome: Outcome, source: str) -> None:
    """Count one stored request from an authenticated source under each kind it held."""
    kinds = set(outcome.kinds) or {None}
    for kind in kinds:
        PENDING.count(INGEST, kind or "unrecognised", outcome.outcome)
        PENDING.count(WEBHOOKS, source, kind or "unrecognised")
    PENDING.set_latest(LAST_WEBHOOK, time.time(), source)
    count_statuses(outcome)


def count_statuses(outcome: Outcome) -> None:
    """Count the new status reports a request stored, by channel and canonical status."""
    for channel, status in outcome.statuses:
        # The channel comes from the payload: anything unexpected shares one label value.
        PENDING.count(OUTCOMES, channel if channel in _CHANNELS else "other", status)


def count_rejected(kind: str | None) -> None:
    """A webhook refused before anything was stored (401, 404, 413, 503...): outcome `rejected`."""
    PENDING.count(INGEST, kind if kind in URL_KINDS else "unknown", "rejected")


def count_request(endpoint: str, method: str, status: int, seconds: float | None) -> None:
    """One answered request, by route (its rule), method and status, and its latency."""
    PENDING.count(REQUESTS, endpoint, method if method in _METHODS else "other", str(status))
    if seconds is not None:
        PENDING.observe_latency(endpoint, seconds)
    if PENDING.idle():  # quiet: written now, so that a scrape of any worker has them all
        PENDING.flush()


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
        from .forwarding.metrics import collect as forwarding_metrics

        engine = self.app.extensions["receiver.db"].engine
        with engine.connect() as connection:
            forwarding = list(forwarding_metrics(connection))
            recordings = recordings_status.counts(connection)
            oldest = recordings_status.oldest_waiting(connection)
            raw = dict(
                connection.execute(
                    sa.select(RawEvent.state, sa.func.count())
                    .where(RawEvent.state.in_(REPLAYABLE_RAW))
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
        for raw_state in REPLAYABLE_RAW:
            events.add_metric([raw_state.value], raw.get(raw_state, 0))
        yield events
        yield from forwarding

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
    PENDING.flush()
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
        PENDING.started()

    @app.after_request
    def record(response: Response) -> Response:
        started = g.get("metrics_start")
        count_request(
            request.url_rule.rule if request.url_rule else "unmatched",
            request.method,
            response.status_code,
            None if started is None else time.perf_counter() - started,
        )
        return response

    @app.teardown_request
    def finish(_exc: BaseException | None) -> None:
        if "metrics_start" in g:
            PENDING.finished()
