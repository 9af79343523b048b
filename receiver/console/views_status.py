"""The health page."""

from __future__ import annotations

from flask import render_template

from ..db import get_session
from . import operations
from .blueprint import bp


@bp.get("/health")
def health() -> str:
    """Recordings waiting and failed, failed checks and the last webhook per source, reconciliation."""
    return render_template("console/health.html", health=operations.health(get_session()))
