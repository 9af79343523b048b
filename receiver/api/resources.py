"""The query API's resources, each declared once: its output schema read from its model.

One rule turns a resource into JSON: a resource is what its output schema (receiver/api/schemas.py)
dumps. Every form follows it:
- a page or a single resource (`Resource.dump`, `Resource.one`) is that dump, read as plain rows
  for speed (receiver/api/rows.py; tests/test_api_rows.py holds the two equal);
- an answer the rows cannot serve (a raw event's body, the replay's and retry's answers) is the
  schema's own `dump`, through the view's response schema;
- a CSV row is the schema's flat fields under the same keys, formatted by the database to the
  same text (receiver/api/csv_export.py);
- anything else that shows a resource (a webhook body's `data`) calls `Resource.one` here.
The compliance archive is not a view of resources: it keeps table rows whole, as stored, so that
they can be imported again (receiver/archive/format.py).
"""

from __future__ import annotations

import sqlalchemy as sa

from ..models import Call, ContactEvent, InboundMessage, Message, MessageEvent, OptOut, RawEvent, Recording
from .rows import Nest, Resource
from .schemas import (
    CallDetailSchema,
    ContactEventSchema,
    EventSchema,
    InboundSchema,
    MessageDetailSchema,
    OptOutSchema,
    RecordingItemSchema,
)

MESSAGE = Resource(
    MessageDetailSchema(),
    Message,
    # Message.history's order: by the provider's time (arrival where it gave none), then id.
    events=Nest(
        MessageEvent.message_id,
        order=(sa.func.coalesce(MessageEvent.occurred_at, MessageEvent.received_at), MessageEvent.id),
    ),
)
INBOUND = Resource(InboundSchema(), InboundMessage)
CALL = Resource(CallDetailSchema(), Call, recordings=Nest(Recording.call_id, order=(Recording.id,)))
EVENT = Resource(EventSchema(), RawEvent)
RECORDING = Resource(RecordingItemSchema(), Recording)
OPT_OUT = Resource(OptOutSchema(), OptOut)
CONTACT = Resource(ContactEventSchema(), ContactEvent)
