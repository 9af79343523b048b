"""The search box and a number's timeline."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, redirect, render_template, request, url_for

from ..db import get_session
from ..numbers import canonical
from . import cursors, lookup, timeline
from .blueprint import bp


@bp.get("/")
def home() -> str:
    """The search box."""
    return render_template("console/search.html", result=None)


@bp.get("/search")
def search() -> Any:
    """Find what the query stands for; go straight there when it is one thing."""
    query = request.args.get("q", "")
    try:
        result = lookup.search(
            get_session(), query, current_app.config["DEFAULT_COUNTRY_CODE"], request.args.get("cursor")
        )
    except cursors.BadCursor:
        abort(400, description="That page link is broken; search again.")
    target = None if request.args.get("cursor") else result.only_target()
    if target is not None:
        kind, key = target
        if kind == "message":
            return redirect(url_for("console.message", message_id=key))
        if kind == "call":
            return redirect(url_for("console.call", call_id=key))
        return redirect(url_for("console.number", number=key))
    return render_template("console/search.html", result=result)


@bp.get("/numbers/<number>")
def number(number: str) -> str:
    """Everything that happened to one number, newest first, a page at a time."""
    country_code = current_app.config["DEFAULT_COUNTRY_CODE"]
    wanted = canonical(number[:64], country_code) or ""
    try:
        page = timeline.timeline(get_session(), wanted, request.args.get("cursor"))
    except cursors.BadCursor:
        abort(400, description="That page link is broken; open the number again.")
    return render_template("console/timeline.html", page=page, written=number)
