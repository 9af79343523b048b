"""GET /api/v1/contacts: contact events (filtered, paged, or CSV)."""

from __future__ import annotations

from typing import Any

from flask import Response
from marshmallow import RAISE

from ..models import ContactEvent
from . import queries, rows
from .args import ContactArgsSchema
from .auth import protected_blueprint
from .lists import csv_documented, documented, list_or_export
from .schemas import ContactEventPageSchema, ContactEventSchema

blp = protected_blueprint("contacts", __name__, "Contacts created or updated in the provider's contact book")
contact_rows = rows.Resource(ContactEventSchema(), ContactEvent)


@blp.route("")
@blp.arguments(ContactArgsSchema, location="query", unknown=RAISE)
@blp.response(200, ContactEventPageSchema)
@csv_documented(blp)
@documented(blp)
def list_contacts(args: dict[str, Any]) -> Response:
    """List contact events, newest first (by arrival), or export them as CSV."""
    return list_or_export(queries.CONTACTS, args, contact_rows)
