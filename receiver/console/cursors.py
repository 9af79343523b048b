"""Opaque page cursors of the console's lists: a position (a few plain values) in URL-safe base64.

A console cursor only says where a page starts: its values are bound as statement parameters
and checked for type on the way in, so a forged one can at worst show another page.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

MAX_CHARS = 600


class BadCursor(ValueError):
    """Not a cursor the console issued."""


def encode(values: list[Any]) -> str:
    plain = [value.isoformat() if isinstance(value, datetime) else value for value in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).rstrip(b"=").decode()


def decode(cursor: str, kinds: list[type | tuple[type, ...]]) -> list[Any]:
    """The values of `cursor`, each of its kind (a datetime is written as ISO 8601 text)."""
    if len(cursor) > MAX_CHARS:
        raise BadCursor("cursor too long")
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise BadCursor("not a cursor") from None
    if not isinstance(values, list) or len(values) != len(kinds):
        raise BadCursor("not a cursor")
    return [_value(value, kind) for value, kind in zip(values, kinds, strict=True)]


def _value(value: Any, kind: type | tuple[type, ...]) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if value is None and type(None) in kinds:
        return None
    if datetime in kinds and isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise BadCursor("not a time") from None
        if moment.tzinfo is None:
            raise BadCursor("not a UTC time")
        return moment
    if int in kinds and type(value) is int and abs(value) < 2**63:
        return value
    if str in kinds and isinstance(value, str) and len(value) <= 255:
        return value
    raise BadCursor("not a cursor")
