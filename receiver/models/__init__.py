"""ORM classes: what receiver stores, one module per concern. No Flask imports, no commits.

Every table's class is importable from here; alembic reads their metadata through this package.
"""

from ..db import Base

# Forwarding's tables live with their package; imported here so that the one metadata holds them.
from ..forwarding import models as _forwarding_models  # noqa: E402, F401, I001
from .access import ApiKey, Source
from .calls import Call, Recording
from .common import (
    FINAL_STATUSES,
    MAX_ID,
    PULL_SOURCE,
    REPLAYABLE_RAW,
    WAITING_RECORDINGS,
    ApiScope,
    Origin,
    RawState,
    RecordingState,
    Status,
)
from .messages import ContactEvent, InboundMessage, Message, MessageEvent, OptOut
from .provider import ProviderRateSlot
from .raw import RawEvent
from .reconcile import ReconcileRun
from .users import ConsoleSession, RateCounter, Role, SignInFailure, User

# isort: split
# The statistics roll-up's tables live with their package; importing them here (after the classes
# the statistics read) puts them in the metadata the migrations and the tests read.
from ..stats import tables as _stats_tables  # noqa: F401

__all__ = [
    "FINAL_STATUSES",
    "MAX_ID",
    "REPLAYABLE_RAW",
    "WAITING_RECORDINGS",
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
    "Origin",
    "PULL_SOURCE",
    "ProviderRateSlot",
    "RawEvent",
    "RateCounter",
    "RawState",
    "ReconcileRun",
    "Recording",
    "RecordingState",
    "Role",
    "SignInFailure",
    "Source",
    "Status",
    "User",
]
