"""`receiver_reconciled_total{kind,what}`: what reconciliation found, summed over every run.

Read from `reconcile_runs` at scrape time, so the figure is the same whichever process answers
and counts the runs of every machine, the command's included.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import sqlalchemy as sa
from flask import Flask
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..models import ReconcileRun

log = logging.getLogger(__name__)

WHAT = ("seen", "new_rows", "new_statuses", "unchanged", "recordings", "differences")


class ReconcileCollector(Collector):
    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect()
        except sa.exc.SQLAlchemyError as exc:  # the database's own gauges say it is down
            log.warning("metrics: reconcile runs unreadable (%s)", type(exc).__name__)

    def _collect(self) -> Iterator[Metric]:
        run = ReconcileRun
        engine = self.app.extensions["receiver.db"].engine
        sums = [sa.func.coalesce(sa.func.sum(getattr(run, what)), 0) for what in WHAT]
        with engine.connect() as connection:
            totals = connection.execute(sa.select(run.kind, *sums).group_by(run.kind)).all()
            last = connection.execute(
                sa.select(run.kind, sa.func.max(run.finished_at))
                .where(run.state == "done")
                .group_by(run.kind)
            ).all()
        found = CounterMetricFamily(
            "receiver_reconciled", "What reconciliation runs found, by kind of run", labels=["kind", "what"]
        )
        for kind, *values in totals:
            for what, value in zip(WHAT, values, strict=True):
                found.add_metric([kind, what], float(value))
        yield found
        done = GaugeMetricFamily(
            "receiver_reconcile_last_success_timestamp_seconds",
            "When a reconciliation run of each kind last finished without error",
            labels=["kind"],
        )
        for kind, finished in last:
            if finished is not None:
                done.add_metric([kind], finished.timestamp())
        yield done
