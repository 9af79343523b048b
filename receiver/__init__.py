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
    """Build the WSGI app: settings, database, blueprints, error handlers, commands."""
    import logging

    from flask import Flask

    from . import cli, console, db, errors, health, metrics
    from .api import register_blueprints
    from .config import load_settings
    from .ingest.bodies import Request

    app = Flask(__name__)
    app.request_class = Request
    app.config.update(load_settings(config))
    app.json.sort_keys = False  # type: ignore[attr-defined]
    logging.basicConfig(level=app.config["LOG_LEVEL"], format=LOG_FORMAT)
    db.Database().init_app(app)
    metrics.init_app(app)
    health.init_app(app)
    register_blueprints(app)
    console.init_app(app)
    errors.register_error_handlers(app)
    cli.init_app(app)
    return app
