"""Blueprints: webhook ingest (`/hooks`) and the read API (`/api/v1`, OpenAPI by flask-smorest)."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from . import calls, changes, contacts, docs, events, hooks, inbound, messages, opt_outs, recordings, stats
from .schemas import ErrorSchema


class ReceiverApi(Api):
    """flask-smorest's Api, documenting errors in the provider's `{status, code, message}` shape."""

    ERROR_SCHEMA = ErrorSchema


def register_blueprints(app: Flask) -> None:
    hooks.install(app)
    app.config.setdefault("API_TITLE", "receiver")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/api/v1")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    docs.init_docs(app)
    api = ReceiverApi(app)
    api.spec.components.security_scheme(
        "bearer",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "an API key: any key reads; replaying an event needs one of scope operate",
        },
    )
    api.register_blueprint(messages.blp, url_prefix="/api/v1/messages")
    api.register_blueprint(inbound.blp, url_prefix="/api/v1/inbound")
    api.register_blueprint(calls.blp, url_prefix="/api/v1/calls")
    api.register_blueprint(events.blp, url_prefix="/api/v1/events")
    api.register_blueprint(recordings.blp, url_prefix="/api/v1/recordings")
    api.register_blueprint(opt_outs.blp, url_prefix="/api/v1/opt-outs")
    api.register_blueprint(contacts.blp, url_prefix="/api/v1/contacts")
    api.register_blueprint(changes.blp, url_prefix="/api/v1/changes")
    api.register_blueprint(stats.blp, url_prefix="/api/v1/stats")
