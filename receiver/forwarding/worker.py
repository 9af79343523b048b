"""The worker's forwarding loop: number new changes, fan them out, send what is due.

One thread loops over the database work; each destination has a lane of its own (a thread pool
as large as its concurrency and an HTTP client behind the address guard), so a slow or dead
destination fills its own lane only: the loop never waits on a request, other lanes keep going,
and ingest, which only writes the outbox, never waits on any of it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from flask import Flask
from sqlalchemy import orm

from .. import fetcher
from ..db import Database, utcnow
from ..provider import retry_after
from . import dispatch, outbox, signing, snapshots
from .destinations import url_policy
from .feed import change_id, timestamp
from .models import Change, Destination, DestinationState

log = logging.getLogger(__name__)

# Seconds between two prunes of old changes by one worker (any worker may prune; deletes are idempotent).
PRUNE_EVERY = 3600.0
# What is read of a destination's answer: its status and headers matter, not its body.
MAX_ANSWER_BYTES = 65536


def body_of(claimed: dispatch.Claimed) -> bytes:
    """The JSON a destination receives: type, the change's time, the resource as it stood."""
    data = snapshots.api_data(claimed.type, claimed.data)
    document = {"type": claimed.type, "timestamp": timestamp(claimed.timestamp), "data": data}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Lane:
    """One destination's threads and connections, and what it has under way."""

    url: str
    concurrency: int
    client: httpx.Client
    pool: ThreadPoolExecutor
    secrets: list[str] = field(default_factory=list)
    under_way: int = 0

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class Forwarder:
    """The loop of one worker process; several may run on several machines."""

    def __init__(self, sessionmaker: orm.sessionmaker[orm.Session], config: Mapping[str, Any]) -> None:
        self.sessionmaker = sessionmaker
        self.address_policy = url_policy(config)
        timeout = config["FORWARD_TIMEOUT"]
        self.policy = dispatch.RetryPolicy(
            base=config["FORWARD_RETRY_BASE"],
            cap=config["FORWARD_RETRY_MAX"],
            period=config["FORWARD_RETRY_FOR"],
            lease=max(config["FORWARD_LEASE"], timeout + 5.0),
        )
        self.poll = config["FORWARD_POLL_INTERVAL"]
        self.retain = timedelta(days=config["FORWARD_RETAIN_DAYS"])
        self.pruned_at = 0.0  # monotonic time of this process's last prune
        self.lanes: dict[int, Lane] = {}
        self.results: queue.Queue[tuple[int, dispatch.Outcome]] = queue.Queue()
        self.wake = threading.Event()
        self._lock = threading.Lock()

    # -- the loop -----------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        """Loop until `stop` is set; a database error is logged and the loop goes on."""
        try:
            while not stop.is_set():
                try:
                    busy = self.tick()
                except Exception:
                    log.exception("forwarding: a round failed; trying again in 1 s")
                    busy = False
                    stop.wait(1.0)
                if not busy:
                    self.wake.wait(self.poll)
                    self.wake.clear()
        finally:
            self.write_results()
            for lane in self.lanes.values():
                lane.close()

    def tick(self) -> bool:
        """One round: number, fan out, write outcomes, claim and send. Whether anything moved."""
        with self.sessionmaker() as session:
            moved = outbox.sequence(session) > 0
            newest = session.scalar(sa.select(sa.func.max(Change.position)))
            destinations = list(session.scalars(sa.select(Destination).order_by(Destination.id)))
            session.commit()  # ends the read; the objects keep what they hold
            self._update_lanes(destinations)
            for destination in destinations:
                if destination.position < (newest or 0):
                    moved |= dispatch.fan_out(session, destination.id) > 0
        moved |= self.write_results() > 0
        if time.monotonic() - self.pruned_at > PRUNE_EVERY:
            self.pruned_at = time.monotonic()
            with self.sessionmaker() as session:
                outbox.prune(session, utcnow() - self.retain)
        for destination in destinations:
            if destination.state == DestinationState.active:
                moved |= self._send_due(destination) > 0
        return moved

    def write_results(self) -> int:
        """Record every finished attempt, one transaction a destination."""
        by_destination: dict[int, list[dispatch.Outcome]] = {}
        while True:
            try:
                destination_id, outcome = self.results.get_nowait()
            except queue.Empty:
                break
            by_destination.setdefault(destination_id, []).append(outcome)
        for destination_id, outcomes in by_destination.items():
            with self.sessionmaker() as session:
                dispatch.record(session, destination_id, outcomes, self.policy)
        return sum(len(outcomes) for outcomes in by_destination.values())

    # -- lanes --------------------------------------------------------------------------------

    def _update_lanes(self, destinations: list[Destination]) -> None:
        now = utcnow()
        seen = set()
        for destination in destinations:
            seen.add(destination.id)
            lane = self.lanes.get(destination.id)
            if lane is not None and (lane.url, lane.concurrency) != (
                destination.url,
                destination.concurrency,
            ):
                lane.close()
                lane = None
            if lane is None:
                lane = self.lanes[destination.id] = self._lane(destination)
            secrets = [destination.secret]
            expires = destination.previous_secret_expires_at
            if destination.previous_secret and expires is not None and expires > now:
                secrets.append(destination.previous_secret)
            lane.secrets = secrets
        for gone in set(self.lanes) - seen:
            self.lanes.pop(gone).close()

    def _lane(self, destination: Destination) -> Lane:
        client = httpx.Client(
            transport=fetcher.GuardedTransport(self.address_policy, max_connections=destination.concurrency),
            timeout=httpx.Timeout(self.address_policy.timeout),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": "receiver (forwarding)"},
        )
        pool = ThreadPoolExecutor(destination.concurrency, thread_name_prefix=f"forward-{destination.name}")
        return Lane(destination.url, destination.concurrency, client, pool)

    def _send_due(self, destination: Destination) -> int:
        lane = self.lanes[destination.id]
        with self._lock:
            free = lane.concurrency - lane.under_way
        if free <= 0:
            return 0
        with self.sessionmaker() as session:
            claimed = dispatch.claim(session, destination.id, free, self.policy)
        for item in claimed:
            with self._lock:
                lane.under_way += 1
            lane.pool.submit(self._send, destination.id, lane, item)
        return len(claimed)

    def _send(self, destination_id: int, lane: Lane, claimed: dispatch.Claimed) -> None:
        try:
            outcome = self._post(lane, claimed)
        except Exception as exc:  # a bug here must not lose the attempt's outcome
            log.exception("forwarding: sending change %s failed", claimed.change_id)
            outcome = dispatch.Outcome(claimed, None, f"internal error: {type(exc).__name__}")
        with self._lock:
            lane.under_way -= 1
        self.results.put((destination_id, outcome))
        self.wake.set()

    def _post(self, lane: Lane, claimed: dispatch.Claimed) -> dispatch.Outcome:
        body = body_of(claimed)
        headers = signing.headers(lane.secrets, change_id(claimed.change_id), int(time.time()), body)
        try:
            with lane.client.stream("POST", lane.url, content=body, headers=headers) as response:
                read = 0
                for chunk in response.iter_raw():
                    read += len(chunk)
                    if read > MAX_ANSWER_BYTES:
                        break
                status = response.status_code
                error = None if 200 <= status < 300 else f"HTTP {status}"
                return dispatch.Outcome(
                    claimed, status, error, retry_after(response.headers.get("retry-after"), None)
                )
        except fetcher.Refused as exc:
            return dispatch.Outcome(claimed, None, f"refused: {exc}")
        except httpx.TimeoutException:
            return dispatch.Outcome(claimed, None, f"no answer within {self.address_policy.timeout:g} s")
        except httpx.HTTPError as exc:
            return dispatch.Outcome(claimed, None, f"{type(exc).__name__}: {exc}"[:500])


def for_app(app: Flask) -> Forwarder:
    """The forwarding loop of a worker process, with the app's database and settings."""
    db: Database = app.extensions["receiver.db"]
    assert db.sessionmaker is not None
    return Forwarder(db.sessionmaker, app.config)
