"""Canonical statuses and which report becomes a message's current status."""

from __future__ import annotations

from datetime import datetime

from ..models import FINAL_STATUSES, Status

_EXACT: dict[str, Status] = {
    # SMS (upper case on the platform)
    "AWAITING-DLR": Status.accepted,
    "DELIVRD": Status.delivered,
    "EXPIRED": Status.expired,
    "TIMEOUT-DLR": Status.unknown,
    "UNDELIV": Status.failed,
    "FAILED": Status.failed,
    "ABSENT-SUB": Status.failed,
    "HANDSET-ERR": Status.failed,
    "HANDSET-BUSY": Status.failed,
    "MOB-OFF": Status.failed,
    "NET-ERR": Status.failed,
    "BARRED": Status.failed,
    "MEMEXEC": Status.failed,
    "SERVER-ERR": Status.failed,
    "NO-CREDITS": Status.failed,
    "NO-ACCOUNT": Status.failed,
    "PROMO-TMOUT": Status.failed,
    "THROTTLED": Status.failed,
    "INVALID-SUB": Status.rejected,
    "REJECTED": Status.rejected,
    "BLACKLST": Status.rejected,
    "DNDNUMB": Status.rejected,
    "SPAM": Status.rejected,
    "NOT-OPTIN": Status.rejected,
    "OPTOUT-REJ": Status.rejected,
    "SNDR-BLOCK": Status.rejected,
    "SERIES-BLK": Status.rejected,
    "SERIES-BLOCK": Status.rejected,
    "TEMPLATE-NOT-FOUND": Status.rejected,
    "NOTALLOWED": Status.rejected,
    "DUPLICATE": Status.rejected,
    "REJ-MULTIPART": Status.rejected,
    # WhatsApp / RCS / Viber (lower case)
    "QUEUED": Status.accepted,
    "SENT": Status.sent,
    "DISPATCHED": Status.sent,
    "DELIVERED": Status.delivered,
    "READ": Status.read,
    "OFFLINE": Status.failed,
    "BLACKLIST": Status.rejected,
    "DELETED": Status.deleted,
}
_REJECTED_PREFIXES = ("INV-", "DLT-")
# Shaped like an SMPP error code (upper case, digits and dashes): a failure we have no name for.
_FAILURE_CODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")

# Progress among the non-final states, to order reports that carry no time.
_PROGRESS = {Status.accepted: 0, Status.unknown: 1, Status.sent: 2}


def canonical(provider_status: str, *, channel: str = "sms") -> Status:
    """Map the provider's status to the canonical one; an empty SMS status means `sent`."""
    value = provider_status.strip().upper()
    if not value:
        return Status.sent if channel == "sms" else Status.unknown
    if value in _EXACT:
        return _EXACT[value]
    if value.startswith(_REJECTED_PREFIXES):
        return Status.rejected
    if channel == "sms" and provider_status.isupper() and set(value) <= _FAILURE_CODE_CHARS:
        # The SMPP list is a proxy; an unlisted upper-case code in an SMS report is a failure.
        return Status.failed
    return Status.unknown


def supersedes(
    new: Status,
    new_at: datetime | None,
    current: Status | None,
    current_at: datetime | None,
) -> bool:
    """Whether a report of `new` (provider time `new_at`) replaces the message's current status.

    No final state is replaced by a non-final one; `read` outranks `delivered` whatever the
    order; otherwise the later provider time wins, and a report without a time wins only by
    progress (among non-final states) or when the current status has no time either.
    """
    if current is None:
        return True
    if new == current:
        return False
    new_final, current_final = new in FINAL_STATUSES, current in FINAL_STATUSES
    if current_final and not new_final:
        return False
    if new_final and not current_final:
        return True
    if {new, current} == {Status.read, Status.delivered}:
        return new == Status.read
    if new_at is not None and current_at is not None:
        if new_at != current_at:
            return new_at > current_at
    if not new_final:
        return _PROGRESS[new] > _PROGRESS[current]
    # Two final states and no way to order them by time: the later report wins.
    return current_at is None or new_at is None
