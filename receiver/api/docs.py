"""The browsable API page at /api/v1/docs: Swagger UI served from the installed package, no CDN."""

from __future__ import annotations

from flask import Flask, Response, send_from_directory
from swagger_ui_bundle import swagger_ui_path

ASSETS_URL = "/api/v1/docs/assets/"


def _asset(filename: str) -> Response:
    return send_from_directory(str(swagger_ui_path), filename, max_age=86400)


def init_docs(app: Flask) -> None:
    """Point flask-smorest's Swagger UI page at assets this service serves itself."""
    app.config.setdefault("OPENAPI_SWAGGER_UI_PATH", "docs")
    app.config.setdefault("OPENAPI_SWAGGER_UI_URL", ASSETS_URL)
    app.config.setdefault("OPENAPI_SWAGGER_UI_CONFIG", {"persistAuthorization": True})
    app.add_url_rule(f"{ASSETS_URL}<path:filename>", "swagger_ui_asset", _asset)
