"""Reconciliation against a stand-in provider (tests/pull_stub.py) on the real database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from receiver.models import (
    Call,
    InboundMessage,
    Message,
    MessageEvent,
    ProviderRateSlot,
    Recording,
)
from receiver.reconcile import latest_runs
from receiver.reconcile.setup import reconciler
from tests.pull_stub import PullStub

DAY = "2026-11-20"
IDS = [f"b34e35ad-fe34-4a8b-977c-{n:012d}:1" for n in range(250)]


@pytest.fixture
def pull(settings: dict[str, Any]) -> Iterator[PullStub]:
    """The stand-in, and the app's settings pointing at it (ask for it before `app`)."""
    with PullStub() as stub:
        settings.update(PROVIDER_BASE_URL=stub.url, PROVIDER_ACCESS_TOKEN=stub.token, RECONCILE_CONCURRENCY=3)
        yield stub


def sms_row(n: int, status: str = "DELIVRD") -> dict[str, Any]:
    return {
        "id": IDS[n],
        "mobile": f"9198450{n:05d}",
        "status": status,
        "units": 1,
        "service": "T",
        "length": 12,
        "charges": "1.0000",
        "custom": f"ref-{n}",
        "custom1": None,
        "location": "India",
        "provider": "Jio",
        "submitted_at": f"{DAY} 10:00:00",
        "delivered_at": f"{DAY} 10:00:05" if status == "DELIVRD" else "",
        "sender": "MOBTXT",
    }


def webhook(n: int, status: str) -> dict[str, Any]:
    submitted = int(datetime(2026, 11, 20, 4, 30, tzinfo=UTC).timestamp())
    report = {"id": IDS[n], "mobile": f"9198450{n:05d}", "status": status, "submit_at": str(submitted)}
    if status == "DELIVRD":
        report["deliv_at"] = str(submitted + 5)
    return report


def seed_day(pull: PullStub, hooks: Any) -> None:
    """250 messages: 50 receiver heard in full, 30 only in part (no final report), 170 never."""
    pull.sms[DAY] = [sms_row(n, "UNDELIV" if n % 10 == 9 else "DELIVRD") for n in range(250)]
    heard = [webhook(n, pull.sms[DAY][n]["status"]) for n in range(50)]
    heard += [webhook(n, "AWAITING-DLR") for n in range(50, 80)]
    assert hooks.post(heard).status_code == 200


def events_of(session: Any, message_id: str) -> list[tuple[str, str]]:
    rows = session.execute(
        sa.select(MessageEvent.provider_status, MessageEvent.origin)
        .where(MessageEvent.message_id == message_id)
        .order_by(MessageEvent.id)
    )
    return [(status, str(origin)) for status, origin in rows]


def test_sms_adds_what_the_webhooks_missed_through_429_and_500_and_nothing_the_second_time(
    pull, hooks, runner, session, api
):
    seed_day(pull, hooks)
    pull.script = {("sms/status", 1): [500], ("sms/status", 2): [429, 500], ("sms/status", 3): [429]}

    result = runner.invoke(args=["reconcile", "sms", "--date", DAY])
    assert result.exit_code == 0, result.output
    assert "250 rows seen, 170 new messages, 200 new statuses, 50 unchanged" in result.output
    assert (pull.answers[429], pull.answers[500]) == (2, 2)
    # every page asked for with the date again (the documented links carry the page alone)
    assert sorted(set(pull.pages_asked("sms/status"))) == [1, 2, 3]
    assert all(q["date"] == [DAY] for p, q in pull.requests if p == "sms/status")

    assert session.scalar(sa.select(sa.func.count()).select_from(Message)) == 250
    assert events_of(session, IDS[0]) == [("DELIVRD", "webhook")]
    assert events_of(session, IDS[60]) == [("AWAITING-DLR", "webhook"), ("DELIVRD", "pull")]
    assert events_of(session, IDS[200]) == [("DELIVRD", "pull")]
    assert events_of(session, IDS[199]) == [("UNDELIV", "pull")]
    partly = session.get(Message, IDS[60])
    assert (partly.status, partly.provider_status, partly.custom) == ("delivered", "DELIVRD", "ref-60")
    new = session.get(Message, IDS[200])
    assert (new.status, new.source, new.operator, str(new.credits)) == (
        "delivered",
        "@provider",
        "Jio",
        "1.0000",
    )
    assert new.submitted_at == datetime(2026, 11, 20, 4, 30, tzinfo=UTC)  # 10:00 in Asia/Kolkata

    shown = api(f"/api/v1/messages/{IDS[60]}").get_json()
    assert [(e["provider_status"], e["origin"]) for e in shown["events"]] == [
        ("AWAITING-DLR", "webhook"),
        ("DELIVRD", "pull"),
    ]
    assert shown["events"][1]["raw_event_id"] is None

    again = runner.invoke(args=["reconcile", "sms", "--date", DAY])
    assert again.exit_code == 0, again.output
    assert "250 rows seen, 0 new messages, 0 new statuses, 250 unchanged" in again.output
    assert session.scalar(sa.select(sa.func.count()).select_from(MessageEvent)) == 280

    runs = latest_runs(session)
    assert [(r.kind, r.state, r.new_rows, r.pages_done) for r in runs] == [
        ("sms", "done", 0, 3),
        ("sms", "done", 170, 3),
    ]
    metrics = api("/metrics").get_data(as_text=True)
    assert 'receiver_reconciled_total{kind="sms",what="new_statuses"} 200.0' in metrics


def test_a_pulled_delivered_never_undoes_a_read_and_a_read_at_counts_as_read(pull, hooks, runner, session):
    later = "2026-11-20T10:05:00.000000Z"
    envelope = {
        "event": "whatsapp:message:status",
        "payload": {
            "id": "wa-1",
            "channel": "whatsapp",
            "to": "919845012345",
            "status": "read",
            "timestamp": later,
        },
    }
    assert hooks.post(envelope).status_code == 200
    second = {**envelope, "payload": {**envelope["payload"], "id": "wa-2", "status": "sent"}}
    assert hooks.post(second).status_code == 200
    pull.by_id["wa-1"] = {
        "id": "wa-1",
        "channel": "whatsapp",
        "to": "919845012345",
        "status": "delivered",
        "delivered_at": "2026-11-20T10:01:00.000000Z",
        "read_at": "",
    }
    pull.by_id["wa-2"] = {**pull.by_id["wa-1"], "id": "wa-2", "read_at": "2026-11-20T10:09:00.000000Z"}
    # wa-1 is final already (read): only wa-2 is stuck
    result = runner.invoke(args=["reconcile", "stuck", "--older-than", "0s"])
    assert result.exit_code == 0, result.output
    assert [p for p, _ in pull.requests] == ["whatsapp/message/status"]
    two = session.get(Message, "wa-2")
    assert (two.status, two.read_at is not None) == ("read", True)
    assert events_of(session, "wa-2") == [("sent", "webhook"), ("delivered", "pull"), ("read", "pull")]

    # asked about wa-1 anyway (as a day's listing would): its delivered joins the history, read stays
    with reconciler(runner.app) as service:
        from receiver.reconcile import messages

        with service.sessionmaker() as s, s.begin():
            counts = messages.store(
                s, [messages.channel_row(pull.by_id["wa-1"], "whatsapp", service.settings.zone, "91")]
            )
    assert (counts.new_statuses, counts.unchanged) == (1, 0)
    session.expire_all()
    one = session.get(Message, "wa-1")
    assert (one.status, one.provider_status) == ("read", "read")
    assert events_of(session, "wa-1") == [("read", "webhook"), ("delivered", "pull")]


def test_a_failed_page_says_which_keeps_what_was_stored_and_the_next_run_takes_up_from_there(
    pull, runner, session
):
    pull.sms[DAY] = [sms_row(n) for n in range(250)]
    pull.broken_pages = {("sms/status", 3)}
    failed = runner.invoke(args=["reconcile", "sms", "--date", DAY])
    assert failed.exit_code != 0
    assert "sms/status page 3: " in failed.output and "HTTP 500 after 5 tries" in failed.output
    assert session.scalar(sa.select(sa.func.count()).select_from(Message)) == 200
    (run,) = latest_runs(session)
    assert (run.state, run.pages_done, run.new_rows) == ("failed", 2, 200)

    pull.broken_pages = set()
    pull.requests.clear()
    done = runner.invoke(args=["reconcile", "sms", "--date", DAY])
    assert done.exit_code == 0, done.output
    assert pull.pages_asked("sms/status") == [3]  # pages 1 and 2 were not fetched again
    assert "50 rows seen, 50 new messages" in done.output
    session.expire_all()
    assert [r.state for r in latest_runs(session)] == ["done", "resumed"]


def test_two_runs_at_once_store_everything_once(pull, app, session):
    pull.sms[DAY] = [sms_row(n) for n in range(250)]
    outcomes: list[Any] = []

    def run() -> None:
        with reconciler(app) as service:
            outcomes.append(service.sms(date.fromisoformat(DAY)))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(outcomes) == 2
    assert sum(o.counts.new_rows for o in outcomes) == 250
    assert sum(o.counts.new_statuses for o in outcomes) == 250
    assert session.scalar(sa.select(sa.func.count()).select_from(MessageEvent)) == 250


def call_row(n: int, start: str, audio: bool = True, **changes: Any) -> dict[str, Any]:
    row = {
        "id": 5000 + n,
        "call_from": "918919520000",
        "call_to": f"91886713{n:04d}",
        "service": "OBD",
        "bridge": "918068280000",
        "status": "ANSWER",
        "duration": "00:00:23",
        "billing": "00:00:20",
        "start_at": start,
        "end_at": start[:-2] + "59",
        "hangup_by": "caller",
        "audio": f"https://audio.example/rec-{n}.mp3?X-Amz-Expires=3600" if audio else None,
    }
    return row | changes


def test_calls_creates_the_missing_ones_and_gives_known_calls_their_recording(
    pull, hooks, runner, session, api
):
    def voice(n: int, recording: str | None) -> dict[str, Any]:
        return {
            "bridge": 918068280000,
            "from": 918919520000,
            "to": int(f"91886713{n:04d}"),
            "source": "OBD",
            "start_at": "2026-11-20 16:27:39",
            "end_at": "2026-11-20 16:27:59",
            "duration": "20",
            "status": "ANSWER",
            "recording_url": recording,
        }

    assert hooks.post(voice(0, None)).status_code == 200  # heard, recording URL missing
    assert hooks.post(voice(1, "https://audio.example/hooked.mp3")).status_code == 200  # heard in full
    pull.calls = [call_row(n, "2026-11-20 16:27:41") for n in range(20)]
    pull.calls.append(call_row(99, "2026-11-21 09:00:00"))  # another day

    result = runner.invoke(args=["reconcile", "calls", "--date", DAY])
    assert result.exit_code == 0, result.output
    assert "20 rows seen, 18 new calls, 19 recordings to fetch, 1 unchanged" in result.output
    assert all(q["datetime[end_at]"] == ["Nov 20, 2026 - Nov 20, 2026"] for _, q in pull.requests)
    assert session.scalar(sa.select(sa.func.count()).select_from(Call)) == 20
    first = session.scalars(sa.select(Call).where(Call.to_canonical == "918867130000")).one()
    assert (first.origin, first.raw_event_id) == ("webhook", first.raw_event_id)
    urls = set(session.scalars(sa.select(Recording.url).where(Recording.call_id == first.id)))
    assert urls == {"https://audio.example/rec-0.mp3?X-Amz-Expires=3600"}
    pulled = session.scalars(sa.select(Call).where(Call.to_canonical == "918867130005")).one()
    assert (pulled.origin, pulled.source, pulled.duration) == ("pull", "@provider", 23)
    shown = api(f"/api/v1/calls/{pulled.id}").get_json()
    assert shown["origin"] == "pull" and shown["recordings"][0]["state"] == "pending"

    again = runner.invoke(args=["reconcile", "calls", "--date", DAY])
    assert "20 rows seen, 0 new calls, 0 recordings to fetch, 20 unchanged" in again.output


def test_inbound_adds_the_sms_no_webhook_brought_within_the_logs_own_limit(pull, hooks, runner, session):
    def envelope(message_id: str, text: str) -> dict[str, Any]:
        return {
            "event": "vmn:message:in",
            "payload": {
                "id": message_id,
                "channels": [{"name": "vmn", "to": "919019000000"}],
                "recipient": {"from": "918074000000"},
                "message": {"type": "text", "payload": {"text": text}},
            },
        }

    assert hooks.post(envelope("in-1", "STOP")).status_code == 200
    assert hooks.post(envelope("webhook-id", "HELLO")).status_code == 200
    now = datetime.now(UTC)
    created = now.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    day = now.date().isoformat()

    def log_row(log_id: str, body: str) -> dict[str, Any]:
        return {
            "id": log_id,
            "mobile": "918074000000",
            "number": "919019000000",
            "first_keyword": body.split()[0],
            "second_keyword": None,
            "body": body,
            "flow_id": None,
            "created_at": created,
        }

    pull.inbound = [
        log_row("in-1", "STOP"),
        log_row("7788", "HELLO"),
        log_row("7789", "HELLO"),
        log_row("7790", "JOIN NOW"),
    ]
    result = runner.invoke(args=["reconcile", "inbound", "--date", day])
    assert result.exit_code == 0, result.output
    assert "4 rows seen, 2 new inbound, 2 unchanged" in result.output
    pulled = session.get(InboundMessage, "7790")
    assert (pulled.origin, pulled.text, pulled.keyword1, pulled.from_canonical) == (
        "pull",
        "JOIN NOW",
        "JOIN",
        "918074000000",
    )
    # vmn/logs took slots of its own bucket as well as the account's
    own = session.scalar(
        sa.select(sa.func.count()).select_from(ProviderRateSlot).where(ProviderRateSlot.slot >= 1_000_000)
    )
    assert own == 30
    used = sa.select(sa.func.count()).select_from(ProviderRateSlot).where(ProviderRateSlot.slot >= 1_000_000)
    assert session.scalar(used.where(ProviderRateSlot.used_at > now - timedelta(minutes=1))) == 1


def test_report_exits_0_when_the_counts_agree_and_3_when_they_differ(pull, runner):
    pull.sms[DAY] = [sms_row(n, "UNDELIV" if n % 10 == 9 else "DELIVRD") for n in range(250)]
    assert runner.invoke(args=["reconcile", "sms", "--date", DAY]).exit_code == 0
    agree = runner.invoke(args=["reconcile", "report", "--date", DAY])
    assert agree.exit_code == 0, agree.output
    assert "the counts agree" in agree.output
    pull.report = {DAY: {"DELIVRD": 226, "UNDELIV": 25, "TIMEOUT-DLR": 3}}
    differ = runner.invoke(args=["reconcile", "report", "--date", DAY])
    assert differ.exit_code == 3, differ.output
    assert (
        "DELIVRD" in differ.output
        and "+" in differ.output
        and "(4 messages counted differently)" in differ.output
    )


def test_without_a_token_every_command_says_so_in_one_line(settings, runner):
    for command in (["sms"], ["calls"], ["inbound"], ["stuck"], ["report"]):
        result = runner.invoke(args=["reconcile", *command])
        assert result.exit_code == 1
        assert result.output.strip().count("\n") == 0
        assert "PROVIDER_ACCESS_TOKEN is not set" in result.output


def test_the_daily_task_reconciles_the_previous_two_days_and_does_nothing_without_a_token(pull, app, session):
    from zoneinfo import ZoneInfo

    from receiver.reconcile.jobs import run_daily
    from receiver.reconcile.times import today

    first = today(ZoneInfo("Asia/Kolkata"))
    days = [(first - timedelta(days=back)).isoformat() for back in (2, 1)]
    for offset, day in enumerate(days):
        pull.sms[day] = [{**sms_row(n + 100 * offset), "submitted_at": f"{day} 10:00:00"} for n in range(100)]
    assert run_daily(app) == []
    runs = sorted((r.kind, str(r.day), r.state, r.new_rows) for r in latest_runs(session, limit=50))
    assert runs == sorted(
        [
            (kind, day, "done", 100 if kind == "sms" else 0)
            for day in days
            for kind in ("sms", "calls", "inbound")
        ]
        + [("report", day, "done", 0) for day in days]
    )
    assert all(r.differences == 0 for r in latest_runs(session, kind="report"))

    huey = app.extensions["receiver.huey"]
    at = datetime(2026, 3, 1, 2, 30)  # RECONCILE_AT, UTC
    assert {"reconcile_daily", "reconcile_stuck"} <= {
        t.name for t in huey.read_periodic(at.replace(minute=41))
    } | {t.name for t in huey.read_periodic(at)}
    assert "reconcile_daily" not in [t.name for t in huey.read_periodic(at.replace(hour=3))]
    app.config["PROVIDER_ACCESS_TOKEN"] = None
    pull.requests.clear()
    for task in huey.read_periodic(at) + huey.read_periodic(at.replace(minute=41)):
        if task.name.startswith("reconcile"):
            huey.execute(task)  # the job itself, as the consumer runs it
    assert pull.requests == []


@pytest.mark.parametrize("command", ["sms", "calls", "inbound", "report"])
@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
def test_a_day_at_an_end_of_the_calendar_is_refused_in_one_line(pull, runner, command, day):
    result = runner.invoke(args=["reconcile", command, "--date", day])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--date'" in result.output and result.exception.__class__ is SystemExit


def changes_since(api: Any, cursor: str = "0") -> tuple[list[dict[str, Any]], str]:
    """Every change of the pull feed after `cursor`, and the cursor after them."""
    found: list[dict[str, Any]] = []
    while True:
        page = api("/api/v1/changes", query_string={"cursor": cursor, "limit": 500}).get_json()
        found += page["data"]
        if page["next_cursor"] == cursor:
            return found, cursor
        cursor = page["next_cursor"]


def test_what_reconciling_stores_is_forwarded_as_a_webhook_would_have_been(pull, hooks, runner, api):
    """A change receiver stores is a change, whether a webhook or a pull brought it."""
    seed_day(pull, hooks)
    _, cursor = changes_since(api)

    assert runner.invoke(args=["reconcile", "sms", "--date", DAY]).exit_code == 0
    changes, cursor = changes_since(api, cursor)
    # 170 messages never heard and 30 heard only in part; not the 50 heard in full.
    assert len(changes) == 200 and {c["type"] for c in changes} == {"message.status"}
    shown = {c["data"]["id"]: c["data"] for c in changes}
    assert set(shown) == set(IDS[50:])
    assert shown[IDS[60]] == api(f"/api/v1/messages/{IDS[60]}").get_json()
    assert [e["origin"] for e in shown[IDS[60]]["events"]] == ["webhook", "pull"]
    assert (shown[IDS[200]]["source"], shown[IDS[200]]["status"]) == ("@provider", "delivered")
    assert runner.invoke(args=["reconcile", "sms", "--date", DAY]).exit_code == 0
    assert changes_since(api, cursor)[0] == []  # nothing new, no change

    pull.calls = [call_row(n, "2026-11-20 16:27:41") for n in range(3)]
    assert runner.invoke(args=["reconcile", "calls", "--date", DAY]).exit_code == 0
    changes, cursor = changes_since(api, cursor)
    assert [c["type"] for c in changes] == ["call"] * 3
    assert {c["data"]["origin"] for c in changes} == {"pull"}
    assert changes[0]["data"] == api(f"/api/v1/calls/{changes[0]['data']['id']}").get_json()

    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    pull.inbound = [
        {
            "id": "7791",
            "mobile": "918074000000",
            "number": "919019000000",
            "first_keyword": "JOIN",
            "second_keyword": None,
            "body": "JOIN",
            "flow_id": None,
            "created_at": created,
        }
    ]
    day = datetime.now(UTC).date().isoformat()
    assert runner.invoke(args=["reconcile", "inbound", "--date", day]).exit_code == 0
    changes, cursor = changes_since(api, cursor)
    assert [(c["type"], c["data"]["id"]) for c in changes] == [("inbound", "7791")]
    assert changes[0]["data"] == api("/api/v1/inbound/7791").get_json()
