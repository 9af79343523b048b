"""Bearer API keys for the read API."""

from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from ..db import first_read, get_session
from ..errors import Unauthorized
from ..sources import api_key_valid

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def require_api_key() -> None:
    """Refuse the request unless it carries a live API key as a Bearer token."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    session = get_session()
    valid = scheme.lower() == "bearer" and first_read(session, lambda: api_key_valid(session, token.strip()))
    if request.method not in _READS:
        # A view that writes (a replay) runs transactions of its own. One that reads goes on in
        # this one, on the same pooled connection: one checkout a request.
        session.rollback()
    if not valid:
        raise Unauthorized("missing, invalid or revoked API key")


def protected_blueprint(name: str, import_name: str, description: str) -> Blueprint:
    """A smorest blueprint whose every view needs an API key, documented as such."""
    blp = Blueprint(name, import_name, description=description)
    blp.before_request(require_api_key)
    return blp
