"""The console's blueprint: every page but sign-in needs a signed-in user; errors as HTML pages."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Blueprint, current_app, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from ..errors import ReceiverError
from .auth import PREFIX, csrf, login_manager

bp = Blueprint(
    "console",
    __name__,
    url_prefix=PREFIX,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

PUBLIC_ENDPOINTS = frozenset({"console.sign_in", "console.static"})


@bp.before_request
def _signed_in_and_checked() -> Any:
    """Send the signed-out to the sign-in page; check the CSRF token of every POST."""
    if request.method == "POST":
        csrf.protect()
    if request.endpoint not in PUBLIC_ENDPOINTS and not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@bp.context_processor
def _endpoints() -> dict[str, Any]:
    """Which console pages this receiver has, for the navigation."""
    return {"console_endpoints": {rule.endpoint for rule in current_app.url_map.iter_rules()}}


@bp.after_request
def _no_caching(response: Any) -> Any:
    if request.endpoint != "console.static" and "audio" not in (request.endpoint or ""):
        response.headers["Cache-Control"] = "no-store"
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
        "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    )
    return response


@bp.errorhandler(CSRFError)
def _csrf_error(exc: CSRFError) -> tuple[str, int]:
    return render_template(
        "console/error.html",
        code=400,
        title="Form expired or forged",
        message=f"{exc.description} Go back, reload the page and try again.",
    ), 400


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Any:
    code = exc.code or 500
    response = exc.get_response()
    body = render_template("console/error.html", code=code, title=exc.name, message=exc.description)
    response.set_data(body)
    response.mimetype = "text/html"
    return response


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> tuple[str, int]:
    """A page, not JSON: 503 while the database is unreachable, else 500 (logged)."""
    if isinstance(exc, sa.exc.OperationalError | ReceiverError) and getattr(exc, "status_code", 503) == 503:
        current_app.logger.error("console: database unavailable: %s", type(exc).__name__)
        return render_template(
            "console/error.html", code=503, title="Database unavailable", message="Try again in a moment."
        ), 503
    current_app.logger.exception("console: unhandled error")
    return render_template(
        "console/error.html", code=500, title="Internal error", message="Something went wrong; it was logged."
    ), 500


@bp.route("/<path:anything>")
def not_found(anything: str) -> tuple[str, int]:
    """Any other console address: signed out, it leads to sign-in; signed in, it is not found."""
    return render_template(
        "console/error.html", code=404, title="Not Found", message="There is no such page in the console."
    ), 404
