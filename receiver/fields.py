"""Tolerant marshmallow fields for the provider's payloads: numbers or strings, several time forms."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import fields

LONG = 10_000  # message texts, captions, URLs
CHANNEL = 32  # what the channel columns hold
INT_MAX = 2**31 - 1  # what an INTEGER column holds on every database


class Text(fields.Field):
    """A string; a JSON number is taken as its text (`91806828XXXX` arrives unquoted).

    At most `max_length` characters (255, what the columns of such values hold; longer texts
    such as message bodies and URLs say so).
    """

    default_error_messages = {"invalid": "Not a valid string.", "too_long": "Longer than {max_length}."}

    def __init__(self, *, max_length: int = 255, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str | None:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            return str(int(value)) if value.is_integer() else repr(value)
        if not isinstance(value, str):
            raise self.make_error("invalid")
        value = value.strip()
        if len(value) > self.max_length:
            raise self.make_error("too_long", max_length=self.max_length)
        return value or None


class _Number(fields.Field):
    """A finite decimal number from a JSON number or a string; an empty string is absent."""

    def _number(self, value: Any) -> Decimal | None:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
        try:
            number = Decimal(str(value))
        except (InvalidOperation, ValueError):
            raise self.make_error("invalid") from None
        if not number.is_finite():
            raise self.make_error("invalid")
        return number


class Integer(_Number):
    """A whole number, from a JSON number or a string such as `"23"` or `"23.0"`, that an
    INTEGER column holds."""

    default_error_messages = {"invalid": "Not a valid integer.", "range": "Out of range (at most {limit})."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int | None:
        number = self._number(value)
        if number is None:
            return None
        if number != number.to_integral_value():
            raise self.make_error("invalid")
        if abs(number) > INT_MAX:
            raise self.make_error("range", limit=INT_MAX)
        return int(number)


class Amount(_Number):
    """A decimal amount such as credits `"2.0000"`."""

    default_error_messages = {"invalid": "Not a valid number."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Decimal | None:
        number = self._number(value)
        if number is None:
            return None
        if abs(number) >= Decimal(10) ** 10:
            raise self.make_error("invalid")
        return number.quantize(Decimal("0.0001"))


class UnixTime(fields.Field):
    """Seconds since the epoch, as a number or a string (milliseconds are recognised)."""

    default_error_messages = {"invalid": "Not a valid unix time."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime | None:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, str):
            value = value.strip()
            if not value or value in {"0", "0000-00-00 00:00:00"}:
                return None
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise self.make_error("invalid") from None
        if seconds > 1e11:  # milliseconds
            seconds /= 1000
        if not 0 < seconds < 32503680000:  # before year 3000
            raise self.make_error("invalid")
        return datetime.fromtimestamp(seconds, UTC)


class Timestamp(fields.Field):
    """An ISO-8601 time or `yyyy-mm-dd H:i:s`. A time without a zone stays naive here:
    the ingest service places it in `PROVIDER_TIMEZONE`."""

    default_error_messages = {"invalid": "Not a valid date and time."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return UnixTime()._deserialize(value, attr, data)
        if not isinstance(value, str):
            raise self.make_error("invalid")
        value = value.strip()
        if not value or value.startswith("0000-00-00"):
            return None
        if value.isdigit():
            return UnixTime()._deserialize(value, attr, data)
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise self.make_error("invalid") from None
        if not 1970 <= parsed.year < 3000:
            raise self.make_error("invalid")
        return parsed
