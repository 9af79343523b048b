"""Raw events waiting for a replay (pending and quarantined), and their replay."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for

from ..api import cursors
from ..db import get_session
from ..ingest import replay
from ..ingest import service as ingest
from ..models import MAX_ID, RawState, Role
from . import operations
from .auth import requires
from .blueprint import bp


def _filters(values: Any) -> tuple[list[RawState], str | None]:
    state = values.get("state") or ""
    if state and state not in {s.value for s in replay.REPLAYABLE}:
        abort(400, description="state is pending or quarantined")
    states = [RawState(state)] if state else list(replay.REPLAYABLE)
    source = (values.get("source") or "").strip()[:64] or None
    return states, source


@bp.get("/events")
def waiting() -> str:
    """Pending and quarantined raw events with their validation errors, newest first."""
    states, source = _filters(request.args)
    try:
        page = operations.waiting_events(get_session(), states, source, request.args.get("cursor"))
    except cursors.CursorError:
        abort(400, description="That page link is for other filters; start again from the first page.")
    return render_template(
        "console/waiting.html", page=page, state=request.args.get("state", ""), source=source or ""
    )


@bp.post("/events/<int:event_id>/replay")
@requires(Role.operator)
def replay_event(event_id: int) -> Any:
    """Replay one raw event (operators): parse it again and store what it says."""
    if not 0 < event_id <= MAX_ID:
        abort(404)
    settings = ingest.Settings.from_config(current_app.config)
    try:
        outcome = replay.replay_one(get_session(), event_id, settings)
    except LookupError:
        abort(404, description=f"No raw event {event_id}.")
    except replay.NotReplayable as exc:
        flash(str(exc))
    else:
        flash(f"Raw event {event_id} replayed: {outcome.message} ({outcome.code}).")
    return redirect(url_for("console.event", event_id=event_id))


@bp.post("/events/replay")
@requires(Role.operator)
def replay_matching() -> Any:
    """Replay the waiting events that match the list's filters (operators)."""
    states, source = _filters(request.form)
    settings = ingest.Settings.from_config(current_app.config)
    run = operations.replay_matching(get_session(), states, source, settings)
    done = ", ".join(f"{name} {count}" for name, count in sorted(run.counts.items())) or "nothing to replay"
    flash(f"Replayed {sum(run.counts.values())} raw events: {done}. Still waiting: {run.remaining}.")
    return redirect(url_for("console.waiting", state=request.form.get("state") or None, source=source))
