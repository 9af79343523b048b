"""One JSON answer shape everywhere, errors included: the provider's own `{status, code, message}`."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify
from marshmallow import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from . import answers


class ReceiverError(Exception):
    """An error with an HTTP status code and a message fit for the client."""

    status_code = 400

    def __init__(self, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


class Unauthorized(ReceiverError):
    status_code = 401


class Forbidden(ReceiverError):
    status_code = 403


class NotFound(ReceiverError):
    status_code = 404


class Conflict(ReceiverError):
    status_code = 409


class Unprocessable(ReceiverError):
    status_code = 422


class Unavailable(ReceiverError):
    status_code = 503


def answer(code: int, message: str, **extra: Any) -> tuple[Response, int]:
    """`{status, code, message, ...extra}`: `status` is OK below 400, else ERROR."""
    return jsonify(answers.body(code, message, **extra)), code


def error_response(
    code: int, message: str, errors: dict[str, Any] | None = None, **extra: Any
) -> tuple[Response, int]:
    """An error answer, with what is wrong field by field under `errors` when there is any."""
    if errors:
        extra = {"errors": errors, **extra}
    return answer(code, message, **extra)


def _database_down() -> tuple[Response, int]:
    response, code = error_response(503, "database unavailable, retry later")
    response.headers["Retry-After"] = "30"
    return response, code


def register_error_handlers(app: Flask) -> None:
    """Answer every error, ours, werkzeug's, marshmallow's and the database's, in one shape."""
    # HTTPException by name too: flask-smorest registers a handler of its own for it.
    for error in (HTTPException, Exception):
        app.register_error_handler(error, lambda exc: handle(app, exc))


def handle(app: Flask, exc: Exception) -> tuple[Response, int]:
    """The answer to an error that reached the app (Flask's handler, and the webhook routes')."""
    if isinstance(exc, ReceiverError):
        if exc.status_code == 503:
            return _database_down()
        return error_response(exc.status_code, exc.message, exc.errors)
    if isinstance(exc, ValidationError):
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        return error_response(422, "validation failed", messages)
    if isinstance(exc, HTTPException):
        code = exc.code or 500
        data = getattr(exc, "data", None) or {}
        errors = data.get("messages") if isinstance(data, dict) else None
        if isinstance(errors, dict) and len(errors) == 1:
            # webargs nests errors under the location ("query", "json"); the field is what matters.
            (errors,) = errors.values()
        return error_response(code, exc.description or exc.name, errors)
    if isinstance(exc, OperationalError):
        app.logger.error("database error: %s", exc.orig.__class__.__name__)
        return _database_down()
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return _database_down()
        app.logger.exception("database error")
        return error_response(500, "internal error")
    app.logger.exception("unhandled error")
    return error_response(500, "internal error")
