"""Build a Reconciler from an app: its database, a provider client with the shared limiters."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask

from ..db import Database
from ..provider import make_client, make_limiter
from .service import Reconciler, Settings

log = logging.getLogger(__name__)

NO_TOKEN = (
    "PROVIDER_ACCESS_TOKEN is not set: reconciliation asks the provider's API, which needs the "
    "account's access token (portal: Developers → API Keys)"
)


class NoToken(Exception):
    """Reconciliation needs PROVIDER_ACCESS_TOKEN."""


@contextmanager
def reconciler(app: Flask, progress: bool = False) -> Iterator[Reconciler]:
    """A Reconciler for the app's settings; raises NoToken without PROVIDER_ACCESS_TOKEN."""
    db: Database = app.extensions["receiver.db"]
    assert db.sessionmaker is not None
    config = app.config
    limiter = make_limiter(config, db.sessionmaker)
    client = make_client(config, limiter, sessionmaker=db.sessionmaker)
    if client is None:
        raise NoToken(NO_TOKEN)

    def hand_over(recording_ids: list[int]) -> None:
        """New recordings go to the worker's queue; should that fail, its sweep finds them."""
        from ..tasks import get_jobs

        try:
            get_jobs(app).enqueue(recording_ids)
        except Exception as exc:
            log.warning(
                "reconcile: could not queue %d recording(s) (%s); the sweep will", len(recording_ids), exc
            )

    try:
        yield Reconciler(
            db.sessionmaker, client, Settings.from_config(config), progress=progress, new_recordings=hand_over
        )
    finally:
        client.close()
