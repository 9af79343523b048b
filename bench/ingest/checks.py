"""After a run: read what wrk's script logged, and check the database against it.

Every acknowledged event must be stored, and nothing stored twice. An event stored but not
acknowledged is allowed only for the requests still on the wire when wrk stopped (one a
connection at most) or answered with an error: the platform would send those again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ACKED = (200, 202)
# The canonical status of the final SMS statuses mix.lua sends (SPEC §4).
FINAL_STATUS = {"DELIVRD": "delivered", "UNDELIV": "failed", "EXPIRED": "expired"}


@dataclass
class Answer:
    status: int  # 0: no answer (the connection was lost before one came)
    latency_us: int
    kind: str
    key: str
    message: str
    ids: str


def read_logs(*logdirs: Path) -> list[Answer]:
    answers = []
    for logdir in logdirs:
        for path in sorted(logdir.glob("t*.log")):
            for line in path.read_text().splitlines():
                parts = line.split("\t")
                parts += [""] * (6 - len(parts))
                answers.append(Answer(int(parts[0]), int(parts[1]), parts[2], parts[3], parts[4], parts[5]))
    return answers


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of `values`."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_ms(answers: list[Answer]) -> dict[str, float]:
    values = [a.latency_us / 1000 for a in answers if a.status]
    return {
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values) if values else float("nan"),
    }


def statuses(answers: list[Answer]) -> dict[str, int]:
    return {str(code): count for code, count in sorted(Counter(a.status for a in answers).items())}


def _event_key(answer: Answer) -> tuple[str, str]:
    """(message id, provider status) of an SMS or channel status report."""
    message_id, provider_status = answer.key.split("|")[:2]
    return message_id, provider_status


def check_receiver(url: str, answers: list[Answer], connections: int) -> dict[str, Any]:
    """Check receiver's tables against the answers; `ok` is False on any loss or double."""
    acked = [a for a in answers if a.status in ACKED]
    refused = [a for a in answers if a.status == 422]
    report: dict[str, Any] = {}
    engine = sa.create_engine(url)
    with engine.connect() as db:
        stored_events = Counter(
            (row.message_id, row.provider_status)
            for row in db.execute(sa.text("SELECT message_id, provider_status FROM message_events"))
        )
        message_status = dict(db.execute(sa.text("SELECT id, status FROM messages")).all())
        inbound = set(db.execute(sa.text("SELECT id FROM inbound_messages")).scalars())
        calls = Counter(db.execute(sa.text("SELECT mid FROM calls")).scalars())
        calls_with_recording = set(
            db.execute(sa.text("SELECT c.mid FROM calls c JOIN recordings r ON r.call_id = c.id")).scalars()
        )
        raw_states = dict(db.execute(sa.text("SELECT state, count(*) FROM raw_events GROUP BY state")).all())
        raw_twice = db.execute(
            sa.text(
                "SELECT count(*) FROM (SELECT source, fingerprint FROM raw_events"
                " GROUP BY source, fingerprint HAVING count(*) > 1) AS d"
            )
        ).scalar_one()
    engine.dispose()

    status_reports = [a for a in acked if a.kind in ("sms", "sms-dup", "sms-late", "channel")]
    expected_events = {_event_key(a) for a in status_reports}
    lost_events = expected_events - set(stored_events)
    events_twice = sum(1 for count in stored_events.values() if count > 1)
    echo_mismatch = sum(1 for a in status_reports if a.ids != _event_key(a)[0])
    expected_inbound = {a.key for a in acked if a.kind == "inbound"}
    expected_calls = {a.key for a in acked if a.kind == "voice"}
    lost_calls = expected_calls - set(calls)
    calls_twice = sum(1 for count in calls.values() if count > 1)
    recordings_missing = len(expected_calls - calls_with_recording)

    finals = {_event_key(a)[0]: _event_key(a)[1] for a in acked if a.kind == "sms"}
    late = [_event_key(a)[0] for a in acked if a.kind == "sms-late" and _event_key(a)[0] in finals]
    regressed = sum(1 for mid in late if message_status.get(mid) != FINAL_STATUS[finals[mid]])
    dup_answers = Counter(a.message for a in acked if a.kind == "sms-dup")
    quarantined = raw_states.get("quarantined", 0)

    acked_keys = expected_events | {(k, "") for k in expected_inbound | expected_calls}
    stored_keys = set(stored_events) | {(k, "") for k in inbound} | {(k, "") for k in calls}
    unacked_stored = len(stored_keys - acked_keys)
    report.update(
        acknowledged_requests=len(acked),
        refused_422=len(refused),
        acknowledged_events=len(expected_events) + len(expected_inbound) + len(expected_calls),
        lost_status_events=len(lost_events),
        lost_inbound=len(expected_inbound - inbound),
        lost_calls=len(lost_calls),
        recordings_missing=recordings_missing,
        quarantined_raw=quarantined,
        quarantine_missing=max(0, len(refused) - quarantined),
        stored_twice=events_twice + calls_twice + raw_twice,
        answer_id_mismatch=echo_mismatch,
        status_regressed=regressed,
        late_reports_checked=len(late),
        resend_answers=dict(dup_answers),
        stored_not_acknowledged=unacked_stored,
        raw_states=raw_states,
    )
    report["lost"] = (
        report["lost_status_events"]
        + report["lost_inbound"]
        + report["lost_calls"]
        + report["recordings_missing"]
        + report["quarantine_missing"]
    )
    unanswered = sum(1 for a in answers if a.status not in ACKED and a.status != 422)
    report["ok"] = (
        report["lost"] == 0
        and report["stored_twice"] == 0
        and echo_mismatch == 0
        and regressed == 0
        and unacked_stored <= connections + unanswered
    )
    return report


def check_naive(
    url: str, answers: list[Answer], connections: int, table: str = "naive_hooks"
) -> dict[str, Any]:
    """The naive app: every acknowledged row is there; resent reports are kept twice."""
    acked_ids = {int(a.ids) for a in answers if a.status in ACKED and a.ids}
    engine = sa.create_engine(url)
    with engine.connect() as db:
        ids = set(db.execute(sa.text(f"SELECT id FROM {table}")).scalars())
        resent_kept = db.execute(
            sa.text(
                f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {table}"
                " GROUP BY body HAVING count(*) > 1) AS d"
            )
        ).scalar_one()
    engine.dispose()
    lost = len(acked_ids - ids)
    unacked_stored = len(ids - acked_ids)
    return {
        "acknowledged_requests": len(acked_ids),
        "rows": len(ids),
        "lost": lost,
        "resent_reports_stored_twice": int(resent_kept),
        "stored_not_acknowledged": unacked_stored,
        "ok": lost == 0 and unacked_stored <= connections,
    }
