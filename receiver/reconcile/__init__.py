"""Reconciliation with the provider's pull APIs: what the webhooks missed, fetched back.

The platform gives up on a webhook after three tries, 30 minutes apart; a receiver that was down
for longer loses those reports unless it asks for them. `receiver reconcile` does, a day at a
time (`sms/status`, `voice/calls`, `vmn/logs`), by message for those stuck in a non-final status,
and compares the provider's daily counts with receiver's (`sms/report`). Every row it adds is
marked `origin: pull`; status rules are the webhooks' own (receiver.statuses). Each run is kept in
`reconcile_runs` with its counts: the metrics, the console and a resumed run read them there.
"""

from __future__ import annotations

from .runs import latest_runs

__all__ = ["latest_runs"]
