"""Group commit: concurrent webhooks of a process share one transaction, a savepoint each.

Each test makes a batch for sure: a connection of the test's own holds the database's write
lock while the webhooks arrive, so the first (on PostgreSQL the first few, one a writer's place)
wait for it as leaders of a batch and the others queue behind; once they all wait, the lock is
let go and the queued ones are written together.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from receiver.ingest.service import Ingest
from receiver.models import RawState

from .conftest import raw_events, row_counts
from .payloads import VMN_INBOUND, sms


@contextmanager
def writer_held(app: Flask) -> Iterator[None]:
    """Hold the database's write lock (SQLite) or the raw events table (PostgreSQL)."""
    engine = sa.create_engine(app.extensions["receiver.db"].engine.url, poolclass=sa.NullPool)
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.execute(sa.text("LOCK TABLE raw_events IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            connection.rollback()
    engine.dispose()


def commits(app: Flask) -> list[int]:
    """Every COMMIT of the app's engine from now on (one item each)."""
    seen: list[int] = []
    sa.event.listen(app.extensions["receiver.db"].engine, "commit", lambda _conn: seen.append(1))
    return seen


def queued_together(app: Flask, post: Callable[[Any], Any], payloads: list[Any]) -> list[Any]:
    """Post every payload at once, all queued behind the first batches before any is written."""
    ingest = Ingest.of(app)
    queued = len(payloads) - ingest.commits.writers
    with ThreadPoolExecutor(len(payloads)) as pool, writer_held(app):
        futures = [pool.submit(post, payload) for payload in payloads]
        deadline = time.monotonic() + 20
        while ingest.commits.waiting() < queued and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ingest.commits.waiting() == queued
    return [future.result() for future in futures]


def queued_in_order(app: Flask, post: Callable[[Any], Any], payloads: list[Any]) -> list[Any]:
    """As `queued_together`, each payload queued only once the one before it waits: the batch
    holds them in this order (the first ones, one a writer's place, each lead a batch of its own)."""
    ingest = Ingest.of(app)
    with ThreadPoolExecutor(len(payloads)) as pool, writer_held(app):
        futures = []
        for count, payload in enumerate(payloads, start=1):
            futures.append(pool.submit(post, payload))
            deadline = time.monotonic() + 20
            while ingest.commits.waiting() < count - ingest.commits.writers and time.monotonic() < deadline:
                time.sleep(0.005)
            if count <= ingest.commits.writers:
                time.sleep(0.1)  # a leader waiting for the lock is not counted as waiting
    return [future.result() for future in futures]


def fail_on(app: Flask, message_id: str, table: str = "messages", column: str = "id") -> Callable[[], None]:
    """A trigger refusing one row of `table` (`column` = `message_id`), standing in for a bug in
    writing it."""
    engine = app.extensions["receiver.db"].engine
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql(
                f"CREATE TRIGGER fail_one BEFORE INSERT ON {table} WHEN NEW.{column} = '{message_id}'"
                " BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            )
        else:
            connection.exec_driver_sql(
                "CREATE FUNCTION fail_one() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.{column} = '{message_id}' THEN RAISE EXCEPTION 'injected fault'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            connection.exec_driver_sql(
                f"CREATE TRIGGER fail_one BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION fail_one()"
            )

    def drop() -> None:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "DROP TRIGGER IF EXISTS fail_one"
                + ("" if engine.dialect.name == "sqlite" else f" ON {table}")
            )
            if engine.dialect.name != "sqlite":
                connection.exec_driver_sql("DROP FUNCTION IF EXISTS fail_one()")

    return drop


def statements(app: Flask, starting: str) -> list[str]:
    """Every statement of the app's engine that starts so, from now on."""
    seen: list[str] = []

    def look(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(starting):
            seen.append(statement)

    sa.event.listen(app.extensions["receiver.db"].engine, "before_cursor_execute", look)
    return seen


def outbox_inserts(app: Flask) -> list[str]:
    """Every statement writing outbox rows from now on."""
    return statements(app, "INSERT INTO CHANGES")


def changed_resources(app: Flask) -> list[str]:
    with app.extensions["receiver.db"].engine.connect() as connection:
        return sorted(connection.execute(sa.text("SELECT resource FROM changes")).scalars())


def test_concurrent_webhooks_share_one_commit(app, hooks):
    seen = commits(app)
    payloads = [sms(id=f"group:{n}") for n in range(12)]

    answers = queued_together(app, hooks.post, payloads)

    assert [a.status_code for a in answers] == [200] * 12
    assert {a.get_json()["message"] for a in answers} == {"stored"}
    # The first batches, one a writer's place, each alone (waiting for the lock), then the rest at once.
    assert len(seen) == Ingest.of(app).commits.writers + 1
    assert row_counts(app)["messages"] == 12


def test_a_batch_without_a_failure_spends_no_savepoint_and_one_insert_of_raw_requests(app, hooks):
    savepoints = statements(app, "SAVEPOINT")
    raw_inserts = statements(app, "INSERT INTO RAW_EVENTS")

    answers = queued_together(app, hooks.post, [sms(id=f"group:{n}") for n in range(12)])

    assert [a.status_code for a in answers] == [200] * 12
    assert savepoints == []
    # The first batches, one a writer's place, each alone, then the rest in one statement.
    assert len(raw_inserts) == Ingest.of(app).commits.writers + 1
    assert row_counts(app)["raw_events"] == 12
    assert {raw.state for raw in raw_events(app)} == {RawState.processed}


def test_a_batch_writes_its_status_reports_in_one_insert_a_table(app, hooks):
    message_inserts = statements(app, "INSERT INTO MESSAGES")
    event_inserts = statements(app, "INSERT INTO MESSAGE_EVENTS")

    answers = queued_together(app, hooks.post, [sms(id=f"group:{n}") for n in range(12)])

    assert [a.status_code for a in answers] == [200] * 12
    assert [a.get_json()["events"] for a in answers] == [[f"group:{n}"] for n in range(12)]
    # The first batches, one a writer's place, each alone, then the rest in one statement a table.
    assert len(message_inserts) == len(event_inserts) == Ingest.of(app).commits.writers + 1
    assert row_counts(app)["messages"] == row_counts(app)["message_events"] == 12
    assert {raw.state for raw in raw_events(app)} == {RawState.processed}


def message_rows(app: Flask) -> dict[str, tuple[str, int, int | None]]:
    """id -> (status, how many status events, the raw event of its first) of every message."""
    with app.extensions["receiver.db"].engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT m.id, m.status, count(e.id), min(e.raw_event_id) FROM messages m"
                " JOIN message_events e ON e.message_id = m.id GROUP BY m.id, m.status"
            )
        )
        return {row[0]: (row[1], row[2], row[3]) for row in rows}


def test_a_batch_mixing_every_case_stores_what_one_by_one_would(app, hooks):
    """New messages, a known one's next report, one message reported by two requests (out of
    order), an array, one naming a message twice, a request stored already and an inbound
    message, in one batch: each status event is stored once against its own raw request, and
    each message ends in the status the rules say."""
    assert hooks.post(sms(id="mix:known", status="AWAITING-DLR")).status_code == 200
    payloads: list[Any] = [sms(id=f"mix:{n}") for n in range(6)]
    payloads += [
        sms(id="mix:known"),
        sms(id="mix:twice"),
        sms(id="mix:twice", status="AWAITING-DLR"),
        [sms(id="mix:array1"), sms(id="mix:array2", status="UNDELIV")],
        [sms(id="mix:again", status="AWAITING-DLR"), sms(id="mix:again")],
        sms(id="mix:known", status="AWAITING-DLR"),
        VMN_INBOUND,
    ]

    answers = queued_together(app, hooks.post, payloads)

    assert [a.status_code for a in answers] == [200] * len(payloads)
    messages = [a.get_json()["message"] for a in answers]
    assert messages == ["stored"] * 11 + ["duplicate", "stored"]
    events = [a.get_json()["events"] for a in answers]
    assert events[:11] == [[f"mix:{n}"] for n in range(6)] + [
        ["mix:known"],
        ["mix:twice"],
        ["mix:twice"],
        ["mix:array1", "mix:array2"],
        ["mix:again", "mix:again"],
    ]
    assert events[11] == ["mix:known"]
    raws = {raw.id: raw for raw in raw_events(app)}
    rows = message_rows(app)
    assert {key: value[:2] for key, value in rows.items()} == {
        **{f"mix:{n}": ("delivered", 1) for n in range(6)},
        "mix:known": ("delivered", 2),
        "mix:twice": ("delivered", 2),
        "mix:array1": ("delivered", 1),
        "mix:array2": ("failed", 1),
        "mix:again": ("delivered", 2),
    }
    for n in range(6):  # each event against the raw request that brought it
        assert json.loads(raws[rows[f"mix:{n}"][2]].body)["id"] == f"mix:{n}"
    assert raws[rows["mix:array1"][2]].id == raws[rows["mix:array2"][2]].id
    assert row_counts(app)["inbound_messages"] == 1
    assert len(raws) == 13
    assert {raw.state for raw in raws.values()} == {RawState.processed}


def test_a_message_another_request_of_the_batch_reports_on_is_written_in_the_batchs_order(app, hooks):
    """A request of status reports only, whose message a request queued before it (with an
    inbound message besides) reports on too, is written after that one, as one by one would:
    the first report creates the message and owns its status event; the second, the same
    status, is a duplicate."""
    writers = Ingest.of(app).commits.writers
    leaders = [sms(id=f"order:lead{n}") for n in range(writers)]
    first = [sms(id="order:m", mobile="911111111111"), VMN_INBOUND]
    second = sms(id="order:m", mobile="922222222222")

    answers = queued_in_order(app, hooks.post, [*leaders, first, second, sms(id="order:other")])

    assert [a.status_code for a in answers] == [200] * (writers + 3)
    assert [a.get_json()["message"] for a in answers[writers:]] == ["stored", "duplicate", "stored"]
    first_raw = next(raw.id for raw in raw_events(app) if raw.body.startswith(b"["))
    assert message_rows(app)["order:m"][1:] == (1, first_raw)
    with app.extensions["receiver.db"].engine.connect() as connection:
        mobile = connection.execute(sa.text("SELECT mobile FROM messages WHERE id = 'order:m'")).scalar()
    assert mobile == "911111111111"


def ten_and_a_bad_one(app: Flask, hooks: Any, *failing: str) -> list[Any]:
    """Post ten good reports and a bad one (`group:bad`, refused by `fail_on(app, *failing)`) at
    once; check the bad one alone was kept raw, for a replay, and the ten stored."""
    drop = fail_on(app, *failing)
    try:
        payloads = [sms(id=f"group:{n}") for n in range(5)] + [sms(id="group:bad")]
        payloads += [sms(id=f"group:{n}") for n in range(5, 10)]
        answers = queued_together(app, hooks.post, payloads)
    finally:
        drop()
    codes = [a.status_code for a in answers]
    assert codes[5] == 202 and answers[5].get_json()["message"] == "accepted"
    assert codes[:5] + codes[6:] == [200] * 10
    assert row_counts(app)["messages"] == 10
    states = [raw.state for raw in raw_events(app)]
    assert states.count(RawState.processed) == 10
    assert states.count(RawState.pending) == 1
    return answers


def test_one_bad_webhook_among_many_fails_alone(app, hooks):
    savepoints = statements(app, "SAVEPOINT")

    ten_and_a_bad_one(app, hooks, "group:bad")

    # Its batch was written again with a savepoint a webhook (and one more for the fallback).
    assert len(savepoints) >= 2


def test_a_failure_between_the_savepoints_and_the_commit_answers_nothing_stored(app, hooks):
    """The COMMIT itself fails (as when the process or its connection dies there): no webhook
    of the batch is acknowledged, and none of them is stored."""
    engine = app.extensions["receiver.db"].engine
    failing = threading.Event()

    def die_at_commit(_connection: Any) -> None:
        if failing.is_set():
            raise OSError("the process died before its COMMIT")

    sa.event.listen(engine, "commit", die_at_commit)
    failing.set()
    try:
        answers = queued_together(app, hooks.post, [sms(id=f"lost:{n}") for n in range(8)])
    finally:
        failing.clear()
        sa.event.remove(engine, "commit", die_at_commit)

    assert all(a.status_code >= 500 for a in answers)
    assert all(a.get_json()["status"] == "ERROR" for a in answers)
    assert row_counts(app)["raw_events"] == 0
    assert row_counts(app)["messages"] == 0
    # The next webhooks are stored as usual.
    assert hooks.post(sms(id="lost:0")).status_code == 200


def test_concurrent_duplicates_in_one_batch_store_one_row(app, hooks):
    payload = sms(id="twin:1")

    answers = queued_together(app, hooks.post, [payload] * 6)

    assert [a.status_code for a in answers] == [200] * 6
    assert sorted(a.get_json()["message"] for a in answers) == ["duplicate"] * 5 + ["stored"]
    assert {tuple(a.get_json()["events"]) for a in answers} == {("twin:1",)}
    assert row_counts(app)["raw_events"] == 1
    assert row_counts(app)["messages"] == 1
    assert row_counts(app)["message_events"] == 1


@pytest.fixture
def short_cache(settings: dict[str, Any]) -> float:
    settings["SOURCE_CACHE_SECONDS"] = 0.5
    return 0.5


def source_reads(app: Flask) -> list[str]:
    """Every statement reading the sources table from now on."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM sources" in statement:
            seen.append(statement)

    sa.event.listen(app.extensions["receiver.db"].engine, "before_cursor_execute", note)
    return seen


def other_process(app: Flask, statement: str) -> None:
    """Change the sources table as another process would (the CLI on another machine)."""
    engine = sa.create_engine(app.extensions["receiver.db"].engine.url, poolclass=sa.NullPool)
    with engine.begin() as connection:
        connection.execute(sa.text(statement))
    engine.dispose()


def test_the_source_is_read_once_within_its_cache_time(short_cache, app, hooks):
    reads = source_reads(app)
    for n in range(5):
        assert hooks.post(sms(id=f"cache:{n}")).status_code == 200
    assert len(reads) == 1


def test_a_source_removed_elsewhere_is_refused_within_the_cache_time(short_cache, app, hooks):
    assert hooks.post(sms(id="gone:1")).status_code == 200
    other_process(app, "DELETE FROM sources WHERE name = 'portal'")

    time.sleep(short_cache + 0.1)

    assert hooks.post(sms(id="gone:2")).status_code == 404


def test_a_secret_rotated_elsewhere_takes_effect_within_the_cache_time(short_cache, app, hooks):
    from receiver import keys

    assert hooks.post(sms(id="rotate:1")).status_code == 200
    other_process(app, f"UPDATE sources SET secret_digest = '{keys.digest('a-new-secret-123')}'")

    time.sleep(short_cache + 0.1)

    assert hooks.post(sms(id="rotate:2")).status_code == 401
    answer = hooks.post(sms(id="rotate:3"), headers={"Authorization": "Bearer a-new-secret-123"})
    assert answer.status_code == 200


def test_a_batch_writes_the_outbox_rows_of_all_its_webhooks_in_one_statement(app, hooks):
    inserts = outbox_inserts(app)
    payloads = [sms(id=f"group:{n}") for n in range(12)]

    answers = queued_together(app, hooks.post, payloads)

    assert [a.status_code for a in answers] == [200] * 12
    # The first batches, one a writer's place, each alone, then the rest in one statement.
    assert len(inserts) == Ingest.of(app).commits.writers + 1
    assert changed_resources(app) == sorted(f"message:group:{n}" for n in range(12))


def test_an_outbox_row_failing_in_a_batch_fails_only_its_own_webhook(app, hooks):
    """The batch's one outbox statement fails: the batch is written again, each webhook with its
    own outbox rows in its own savepoint, so that only the webhook they come from is kept raw."""
    ten_and_a_bad_one(app, hooks, "message:group:bad", "changes", "resource")

    assert changed_resources(app) == sorted(f"message:group:{n}" for n in range(10))


def test_outbox_statements_come_in_a_few_sizes_and_write_each_change_once(app, hooks):
    """Batches of 1 to 17 changes use the texts for 1, 2, 4, 8, 16 and 32 resources, not one a
    count (each text is compiled, and planned on each PostgreSQL connection, on its own); the
    padding repeats an id, which writes no second row."""
    inserts = outbox_inserts(app)

    for count in range(1, 18):
        reports = [sms(id=f"sizes:{count}:{n}") for n in range(count)]
        assert hooks.post(reports).status_code == 200

    assert len(inserts) == 17
    assert len(set(inserts)) == 6
    expected = sorted(f"message:sizes:{count}:{n}" for count in range(1, 18) for n in range(count))
    assert changed_resources(app) == expected


def test_many_changes_go_to_the_outbox_in_statements_of_a_bounded_size(app, hooks):
    """However many events a batch carries, a statement names at most CHUNK resources: a text
    for each count up to it is compiled once, and no database's parameter limit is reached."""
    from receiver.forwarding.snapshots import CHUNK

    inserts = outbox_inserts(app)
    reports = [sms(id=f"array:{n}") for n in range(2 * CHUNK + 22)]

    assert hooks.post(reports).status_code == 200

    assert len(inserts) == 3
    assert changed_resources(app) == sorted(f"message:array:{n}" for n in range(2 * CHUNK + 22))
