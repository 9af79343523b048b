"""The recordings API fallback: when a webhook's recording URL no longer works, find the call's
recording in the provider's `voice/recordings` list, by its numbers and a time close to the call's."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ..models import Call
from ..numbers import DEFAULT_COUNTRY_CODE, canonical
from ..provider import ProviderClient

if TYPE_CHECKING:  # the downloader's policy; download imports this module
    from .download import Policy


def numbers_match(a: Any, b: Any, country_code: str = DEFAULT_COUNTRY_CODE) -> bool:
    """The same phone number by the rule every number filter uses (receiver.numbers): with or
    without country code, `+`, `00`, a trunk `0` or spacing; a national number has `country_code`."""
    x, y = canonical(a, country_code), canonical(b, country_code)
    return x is not None and x == y


def _provider_time(value: Any, tz: ZoneInfo) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def find_fresh_url(
    client: ProviderClient, call: Call, policy: Policy, progress: Callable[[int], None] | None = None
) -> str | None:
    """Ask `voice/recordings` for the call's recording: same numbers, the closest time in the window."""
    moments = [t for t in (call.start_at, call.end_at) if t is not None] or [call.received_at]
    window = timedelta(seconds=policy.match_window)
    first = (min(moments) - window).astimezone(policy.timezone)
    last = (max(moments) + window).astimezone(policy.timezone)
    params = {"datetime[r.created_at]": f"{first:%b %d, %Y} - {last:%b %d, %Y}"}
    best: tuple[float, str] | None = None
    for seen, item in enumerate(client.paginate("voice/recordings", params)):
        if progress is not None:
            progress(seen)  # keeps the lease while pages come in
        audio = item.get("audio")
        if not audio or not numbers_match(item.get("call_from"), call.from_number, policy.country_code):
            continue
        if not numbers_match(item.get("call_to"), call.to_number, policy.country_code):
            continue
        created = _provider_time(item.get("created_at"), policy.timezone)
        if created is None:
            continue
        distance = min(abs((created - moment).total_seconds()) for moment in moments)
        if distance <= policy.match_window and (best is None or distance < best[0]):
            best = (distance, str(audio))
    return best[1] if best else None
