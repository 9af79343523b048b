"""Cursors of the lists: the position a page continues after, opaque to clients.

A cursor holds a version, the list it belongs to, a fingerprint of the filters it was issued
for, the position, and a checksum. Anything else is refused (`CursorError`), so a cursor from
another list, another filter or another program is a 422, not a silent wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from ..models import MAX_ID
from .queries import Listing, SortKey

_CURSOR_VERSION = "c1"
_CHECK_BYTES = 8
_MAX_CURSOR_CHARS = 1024


class CursorError(ValueError):
    """A cursor receiver did not issue for this list and these filters."""


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return getattr(value, "value", value)  # enums by their value


def filters_fingerprint(filters: Mapping[str, Any]) -> str:
    """A short digest of the filters a cursor was issued for."""
    plain = {name: _plain(value) for name, value in sorted(filters.items()) if value is not None}
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check(payload: bytes) -> bytes:
    return hashlib.sha256(b"receiver cursor\n" + payload).digest()[:_CHECK_BYTES]


def encode_cursor(listing: Listing, filters: Mapping[str, Any], position: Sequence[Any]) -> str:
    """The opaque cursor of the page after `position`."""
    document = [_CURSOR_VERSION, listing.name, filters_fingerprint(filters), [_plain(v) for v in position]]
    payload = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload + _check(payload)).rstrip(b"=").decode()


def decode_cursor(listing: Listing, filters: Mapping[str, Any], cursor: str) -> tuple[Any, ...]:
    """The position a cursor stands for; CursorError unless receiver issued it for this query."""
    if not cursor or len(cursor) > _MAX_CURSOR_CHARS:
        raise CursorError("not a cursor issued by receiver")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise CursorError("not a cursor issued by receiver") from None
    payload, check = raw[:-_CHECK_BYTES], raw[-_CHECK_BYTES:]
    if len(raw) <= _CHECK_BYTES or check != _check(payload):
        raise CursorError("not a cursor issued by receiver")
    try:
        version, name, prints, values = json.loads(payload)
    except ValueError:
        raise CursorError("not a cursor issued by receiver") from None
    if version != _CURSOR_VERSION or name != listing.name:
        raise CursorError(f"not a cursor of the {listing.name} list")
    if prints != filters_fingerprint(filters):
        raise CursorError("issued for other filters: keep the filters of the first page")
    if not isinstance(values, list) or len(values) != len(listing.order):
        raise CursorError("not a cursor issued by receiver")
    return tuple(_position_value(key, value) for key, value in zip(listing.order, values, strict=True))


def _position_value(key: SortKey, value: Any) -> Any:
    if value is None and key.nullable:
        return None
    if key.kind is datetime and isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise CursorError("not a cursor issued by receiver") from None
        if moment.tzinfo is not None:
            return moment
    if key.kind is int and type(value) is int and 0 <= value <= MAX_ID:
        return value
    if key.kind is str and isinstance(value, str) and 0 < len(value) <= 256:
        return value
    raise CursorError("not a cursor issued by receiver")
