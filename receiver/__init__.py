"""receiver: a self-hosted webhook receiver for the Mobtexting / BICS CPaaS platform."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from . import cli, db, errors, health, metrics
from .api import register_blueprints
from .bodies import Request
from .config import load_settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the WSGI app: settings, database, blueprints, error handlers, commands."""
    app = Flask(__name__)
    app.request_class = Request
    app.config.update(load_settings(config))
    app.json.sort_keys = False  # type: ignore[attr-defined]
    logging.basicConfig(level=app.config["LOG_LEVEL"], format=LOG_FORMAT)
    db.Database().init_app(app)
    metrics.init_app(app)
    health.init_app(app)
    register_blueprints(app)
    errors.register_error_handlers(app)
    cli.init_app(app)
    return app
