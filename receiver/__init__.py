"""receiver: a self-hosted webhook receiver for the Mobtexting / BICS CPaaS platform.

Importing the package loads nothing else. gunicorn's master imports `receiver.server` (the web
worker class) before it forks, and each worker patches the standard library for gevent only
after the fork: a library imported before that patch keeps the blocking locks and sockets it
bound at import, which would stall the whole worker. So the app's modules are imported by
`create_app`, in the process that serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the WSGI app: settings, database, job queue and tasks, blueprints, error handlers, commands."""
    import logging

    from flask import Flask

    from . import cli, console, db, errors, health, metrics, proxies
    from .api import register_blueprints
    from .config import load_settings
    from .ingest.bodies import Request

    app = Flask(__name__)
    app.request_class = Request
    app.config.update(load_settings(config))
    app.json.sort_keys = False  # type: ignore[attr-defined]
    logging.basicConfig(level=app.config["LOG_LEVEL"], format=LOG_FORMAT)
    db.Database().init_app(app)
    register_jobs(app)
    metrics.init_app(app)
    health.init_app(app)
    register_blueprints(app)
    console.init_app(app)
    errors.register_error_handlers(app)
    cli.init_app(app)
    if app.config["TRUSTED_PROXIES"]:
        proxies.trust_proxies(app, app.config["TRUSTED_PROXIES"])
    return app


def register_jobs(app: Flask) -> None:
    """Give the app its job queue, then each package its tasks on it and the loops the worker
    runs beside it: one line a package."""
    from . import jobqueue
    from .archive import jobs as archive_jobs
    from .forwarding import jobs as forwarding_jobs
    from .reconcile import jobs as reconcile_jobs
    from .recordings import jobs as recordings_jobs
    from .stats import jobs as stats_jobs

    jobqueue.init_app(app)
    recordings_jobs.init_app(app)
    archive_jobs.init_app(app)
    reconcile_jobs.init_app(app)
    forwarding_jobs.init_app(app)
    stats_jobs.init_app(app)
