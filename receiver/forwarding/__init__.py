"""Forwarding: every change receiver commits, delivered signed to the customer's own endpoints
and offered as a pull feed (`GET /api/v1/changes`).

A change is written to an outbox (`changes`) in the very transaction that makes it, with the
resource as the query API shows it at that moment: nothing committed can be missed, whatever
process dies when. The worker then numbers the new rows in the order they became visible
(receiver.forwarding.outbox), fans them out to the destinations that asked for their type, and
delivers them (receiver.forwarding.dispatch), each destination with threads of its own.
"""

from __future__ import annotations

from .outbox import StoredChange, changes_of, record_changes

__all__ = ["StoredChange", "changes_of", "record_changes"]
