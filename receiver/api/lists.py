"""What every list view shares: JSON pages or a CSV export, and their OpenAPI description."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, jsonify, request
from flask_smorest import Blueprint

from ..db import get_db, get_session
from ..errors import NotFound, Unprocessable
from ..models import MAX_ID
from . import csv_export as export
from . import queries, rows
from .schemas import ErrorSchema


def csv_documented(blp: Blueprint) -> Callable[[Any], Any]:
    """Document the CSV form of a list's 200 answer beside its JSON form."""
    return blp.alt_response(
        200,
        schema={"type": "string"},
        content_type="text/csv",
        description="A page of rows (JSON), or every matching row (CSV, with a header row)",
        success=True,
    )


def documented(blp: Blueprint, *, not_found: str | None = None) -> Callable[[Any], Any]:
    """Document what every read API view shares: the API key, its 401, and a 404 if it has one."""

    def decorate(view: Any) -> Any:
        view = blp.alt_response(401, schema=ErrorSchema, description="missing, invalid or revoked API key")(
            view
        )
        if not_found:
            view = blp.alt_response(404, schema=ErrorSchema, description=not_found)(view)
        return blp.doc(security=[{"bearer": []}])(view)

    return decorate


def wants_csv(args: dict[str, Any]) -> bool:
    """`?format=` decides; without it, an `Accept` header preferring text/csv to JSON."""
    if args.get("format") is not None:
        return bool(args["format"] == "csv")
    return request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"


def list_or_export(listing: queries.Listing, args: dict[str, Any], resource: rows.Resource) -> Response:
    """A page of the list as `{data, next_cursor}`, or all of it as CSV."""
    filters = args["filters"]
    if wants_csv(args):
        given = [name for name in ("limit", "cursor") if name in request.args]
        if given:
            message = "not used by a CSV export, which holds every matching row"
            raise Unprocessable("validation failed", {name: [message] for name in given})
        engine = get_db().engine
        assert engine is not None
        return export.csv_response(engine, listing, filters, resource.schema)
    session = get_session()
    page = queries.fetch_page(
        session, listing, filters, resource.columns, limit=args["limit"], after=args["after"]
    )
    next_cursor = None
    if page.next_position is not None:
        next_cursor = queries.encode_cursor(listing, filters, page.next_position)
    # Written here, not by the view's response schema: flask-smorest passes a Response through.
    return jsonify({"data": resource.dump(session, page.rows), "next_cursor": next_cursor})


IdT = TypeVar("IdT", str, int)


def valid_id(value: IdT, what: str) -> IdT:
    """An id that can name a row; a 404 (not a database error) for one that cannot."""
    if isinstance(value, int) and value > MAX_ID:
        raise NotFound(f"no {what} {value}")
    if isinstance(value, str) and ("\x00" in value or len(value) > 255):
        raise NotFound(f"no {what} {value!r}")
    return value
