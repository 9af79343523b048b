"""From request bytes to payload objects: the query string, a JSON body or a form.

Anything anyone on the internet can send is read here without an exception other than
PayloadError: JSON nested too deep, numbers JSON cannot hold, NUL characters and lone surrogates
(which no database text column takes), forms that cannot be parsed. So a request that cannot be
stored as rows is refused with its reasons, field by field, and is never left waiting for a replay
that would fail the same way.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_plus

from flask import Request as FlaskRequest
from werkzeug.datastructures import Headers, ImmutableMultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder
from werkzeug.utils import cached_property

from ..credentials import REDACTED, is_credential

# Containers within one event; the provider's deepest payload (an envelope's contact) has 4.
MAX_DEPTH = 32
# Fields of a form, parts of a multipart body.
MAX_FORM_FIELDS = 1000
# Reasons given at most, so that a body full of bad values keeps a short error list.
MAX_ERRORS = 50

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Printable ASCII but `&`-separated pieces stay as they came; other bytes are percent-encoded.
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if not chr(c).isalnum())


class PayloadError(Exception):
    """The request cannot be read as events; `errors` says why, field by field."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__("invalid payload")
        self.errors = errors


class Request(FlaskRequest):
    """Flask's request, whose query arguments never fail on bytes that are not UTF-8."""

    @cached_property
    def args(self) -> ImmutableMultiDict[str, str]:  # type: ignore[override]
        return query_args(self.query_string)


def query_args(query_string: bytes) -> ImmutableMultiDict[str, str]:
    """As werkzeug reads them, but a raw byte a URL cannot hold stays percent-encoded, like an
    invalid percent-escape, where werkzeug would raise UnicodeDecodeError (a 500)."""
    text = quote(query_string, safe=_URL_SAFE)
    pairs = parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote")  # as werkzeug
    return ImmutableMultiDict(pairs)


def stored_query(raw: bytes) -> str:
    """The query string to keep: as received, but for the value of each credential parameter.

    Nothing is decoded and encoded again, so `%FF`, `+`, the order, repeated and blank
    parameters stay as they came. Bytes a URL cannot hold (controls, spaces, non-ASCII) are
    percent-encoded, which reads back the same.
    """
    pieces = quote(raw, safe=_URL_SAFE).split("&")
    for index, piece in enumerate(pieces):
        name, equals, _ = piece.partition("=")
        if equals and is_credential(unquote_plus(name)):
            pieces[index] = f"{name}={REDACTED}"
    return "&".join(pieces)


def content_type_of(headers: dict[str, Any]) -> str:
    """The stored request's content type (header names are kept as received)."""
    return str(Headers(list(headers.items())).get("Content-Type", ""))


def parse_json(body: bytes) -> Any:
    """The body's JSON document; PayloadError if it is not JSON (`NaN` is not) or nests too deep."""
    try:
        return json.loads(body, parse_constant=_not_json)
    except RecursionError:
        raise PayloadError({"body": [f"JSON nested deeper than {MAX_DEPTH} levels."]}) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError({"body": [f"Invalid JSON: {exc}"]}) from None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def decode(content_type: str, query_string: str, body: bytes, max_events: int) -> list[dict[str, Any]]:
    """Return the request's payload objects: a JSON array gives several (at most `max_events`,
    so that one request never holds the database for long), anything else one."""
    items = _items(content_type, query_string, body)
    if len(items) > max_events:
        raise PayloadError(
            {"body": [f"The array holds {len(items)} events; at most {max_events} are taken in one request."]}
        )
    check_values(items)
    return items


def _items(content_type: str, query_string: str, body: bytes) -> list[dict[str, Any]]:
    query = {
        key: value for key, value in parse_qsl(query_string, keep_blank_values=True) if not is_credential(key)
    }
    mimetype = content_type.split(";", 1)[0].strip().lower()
    stripped = body.strip()
    if not stripped:
        if not query:
            raise PayloadError({"body": ["The request has no payload."]})
        return [query]
    if mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return [{**query, **_form(content_type, body)}]
    if mimetype.endswith("json") or stripped[:1] in (b"{", b"["):
        document = parse_json(body)
        if isinstance(document, dict):
            return [{**query, **document}]
        if isinstance(document, list):
            if not document:
                raise PayloadError({"body": ["The JSON array holds no events."]})
            bad = [str(i) for i, item in enumerate(document) if not isinstance(item, dict)]
            if bad:
                raise PayloadError({i: ["Each item of the array must be a JSON object."] for i in bad})
            return document
        raise PayloadError({"body": ["The JSON body must be an object or an array of objects."]})
    if b"=" in stripped and mimetype in ("", "text/plain", "application/octet-stream"):
        try:
            pairs = parse_qsl(stripped.decode(), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            pairs = []
        if pairs:
            return [{**query, **dict(pairs)}]
    raise PayloadError(
        {"body": [f"Unsupported body ({mimetype or 'no content type'}): send JSON or a form."]}
    )


# -- values no database column can hold ---------------------------------------------------------


def check_values(items: list[dict[str, Any]]) -> None:
    """Refuse NUL characters and lone surrogates in any name or value, numbers that are not
    finite, and nesting deeper than MAX_DEPTH; name each offending field by its path."""
    errors: dict[str, list[str]] = {}
    prefix = len(items) > 1
    for index, item in enumerate(items):
        # A field's path is named only when something is wrong with it.
        stack: list[tuple[tuple[Any, ...], Any]] = [((index,) if prefix else (), item)]
        while stack and len(errors) < MAX_ERRORS:
            path, value = stack.pop()
            if isinstance(value, dict | list):
                if len(path) >= MAX_DEPTH + prefix:
                    deep = f"JSON nested deeper than {MAX_DEPTH} levels (at {_path_name(path)})."
                    raise PayloadError({"body": [deep]})
                pairs = value.items() if isinstance(value, dict) else enumerate(value)
                for key, child in pairs:
                    if isinstance(key, str) and (problem := _unstorable(key)):
                        errors[_path_name((*path, key))] = [f"The field name {problem}."]
                    stack.append(((*path, key), child))
            elif isinstance(value, str) and (problem := _unstorable(value)):
                errors[_path_name(path)] = [f"The value {problem}."]
            elif isinstance(value, float) and not math.isfinite(value):
                errors[_path_name(path)] = ["Not a finite number."]
    if errors:
        raise PayloadError(errors)


def _path_name(path: tuple[Any, ...]) -> str:
    return ".".join(shown(str(key)) for key in path)


def _unstorable(text: str) -> str | None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character"
    return f"contains a lone surrogate (U+{ord(found.group()):04X}), which is not a character"


def shown(name: str) -> str:
    """A name fit for an error message and a JSON column: NULs and surrogates escaped."""
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", name)


# -- forms --------------------------------------------------------------------------------------


def _form(content_type: str, body: bytes) -> dict[str, Any]:
    mimetype, options = parse_options_header(content_type)
    if mimetype == "multipart/form-data":
        pairs = _multipart(options.get("boundary"), body)
    else:
        pairs = _urlencoded(body)
    data: dict[str, Any] = {}
    for name, value in pairs:
        data.setdefault(name, value)  # a repeated field: the first one, as a form parser gives
    return data


def _urlencoded(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(
            {"body": [f"The form is not valid UTF-8: {exc.reason} at byte {exc.start}."]}
        ) from None
    try:
        return parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        raise PayloadError({"body": ["A percent-encoded value of the form is not valid UTF-8."]}) from None
    except ValueError:
        raise PayloadError({"body": [f"The form has more than {MAX_FORM_FIELDS} fields."]}) from None


def _multipart(boundary: str | None, body: bytes) -> list[tuple[str, str]]:
    if not boundary or len(boundary) > 70 or not boundary.isascii():
        raise PayloadError({"body": ["The multipart Content-Type has no valid boundary."]})
    decoder = MultipartDecoder(boundary.encode(), max_parts=MAX_FORM_FIELDS)
    decoder.receive_data(body)
    decoder.receive_data(None)
    pairs: list[tuple[str, str]] = []
    part: Field | File | None = None
    chunks: list[bytes] = []
    try:
        while not isinstance(event := decoder.next_event(), Epilogue):
            if isinstance(event, Field | File):
                if event.name is None:
                    raise PayloadError({"body": ["A part of the multipart body has no name."]})
                part, chunks = event, []
            elif isinstance(event, Data) and part is not None:
                chunks.append(event.data)
                if not event.more_data:
                    pairs.append((part.name, _part_value(part, b"".join(chunks))))
    except RequestEntityTooLarge:
        raise PayloadError({"body": [f"The multipart body has more than {MAX_FORM_FIELDS} parts."]}) from None
    except ValueError as exc:
        raise PayloadError({"body": [f"The multipart body cannot be parsed: {exc}."]}) from None
    return pairs


def _part_value(part: Field | File, data: bytes) -> str:
    """A field's text; a file stands for its file name (the raw request keeps its bytes)."""
    if isinstance(part, File):
        return part.filename or ""
    _, options = parse_options_header(part.headers.get("content-type"))
    charset = options.get("charset", "utf-8")
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    try:
        return data.decode(charset)
    except UnicodeDecodeError:
        raise PayloadError({"body": [f"Part {shown(part.name)!r} is not valid {charset}."]}) from None
