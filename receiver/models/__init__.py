"""ORM classes: what receiver stores, one module per concern. No Flask imports, no commits.

Every table's class is importable from here; alembic reads their metadata through this package.
"""

from ..db import Base
from .access import ApiKey, Source
from .calls import Call, Recording
from .common import FINAL_STATUSES, MAX_ID, ApiScope, RawState, RecordingState, Status
from .messages import ContactEvent, InboundMessage, Message, MessageEvent, OptOut
from .provider import ProviderRateSlot
from .raw import RawEvent
from .users import ConsoleSession, RateCounter, Role, SignInFailure, User

__all__ = [
    "FINAL_STATUSES",
    "MAX_ID",
    "ApiKey",
    "ApiScope",
    "Base",
    "Call",
    "ConsoleSession",
    "ContactEvent",
    "InboundMessage",
    "Message",
    "MessageEvent",
    "OptOut",
    "ProviderRateSlot",
    "RawEvent",
    "RateCounter",
    "RawState",
    "Recording",
    "RecordingState",
    "Role",
    "SignInFailure",
    "Source",
    "Status",
    "User",
]
