"""Bearer API keys for the query API: any live key reads; a writing route needs an `operate` key."""

from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from ..db import first_read, get_session
from ..errors import Forbidden, Unauthorized
from ..models import ApiScope
from ..sources import api_key_scope

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def require_api_key() -> None:
    """Refuse the request unless it carries a live API key as a Bearer token, and one of scope
    `operate` if it writes (401 without a key, 403 for a read key)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    # The request's session: a view that reads goes on in this transaction, on the same pooled
    # connection (one checkout a request); one that writes hands a session of its own to the
    # service, which owns its transaction.
    session = get_session()
    scope = None
    if scheme.lower() == "bearer":
        scope = first_read(session, lambda: api_key_scope(session, token.strip()))
    if scope is None:
        raise Unauthorized("missing, invalid or revoked API key")
    if request.method not in _READS and scope != ApiScope.operate:
        raise Forbidden(f"this API key may only read; {request.method} needs a key of scope operate")


def protected_blueprint(name: str, import_name: str, description: str) -> Blueprint:
    """A smorest blueprint whose every view needs an API key, documented as such."""
    blp = Blueprint(name, import_name, description=description)
    blp.before_request(require_api_key)
    return blp
