"""Keyset pagination: every row once, also while rows arrive; cursors only receiver issued."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from receiver.api import queries
from tests import factories
from tests.payloads import sms


def _walk(api, path: str, **params) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(10_000):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = api(path, query_string=query)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        seen.extend(str(row["id"]) for row in body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("pagination did not end")


def test_pages_cover_every_row_once_in_order(app, api):
    spread = factories.messages(app, 57, step=timedelta(seconds=1))
    # Rows sharing one created_at are told apart by id.
    tied = factories.messages(app, 10, start=factories.T0 + timedelta(seconds=30), step=timedelta(0))
    keyed = [(i, m) for i, m in enumerate(spread)] + [(30, m) for m in tied]
    seen = _walk(api, "/api/v1/messages", limit=10)
    assert len(seen) == len(set(seen)) == 67
    assert seen == [m for _, m in sorted(keyed, reverse=True)]


def test_pages_follow_filters(app, api):
    factories.messages(app, 30, mobile="919000000001")
    factories.messages(app, 30, mobile="919000000002")
    seen = _walk(api, "/api/v1/messages", limit=7, mobile="919000000001")
    assert len(seen) == len(set(seen)) == 30


def test_pagination_while_messages_arrive_returns_every_row_once(app, api, source_secret):
    before = factories.messages(app, 120, step=timedelta(milliseconds=10))
    stop = threading.Event()
    arrived: list[str] = []
    late = app.test_client()

    def arrive() -> None:
        for n in range(400):
            if stop.is_set():
                return
            if n % 5 == 4:
                # A row committed late with an old creation time lands behind the readers' cursors.
                arrived.extend(factories.messages(app, 1, start=factories.T0 + timedelta(milliseconds=5 * n)))
                continue
            answer = late.post(
                "/hooks/portal",
                json=sms(id=f"live:{n}"),
                headers={"Authorization": f"Bearer {source_secret}"},
            )
            assert answer.status_code == 200
            arrived.append(f"live:{n}")

    writer = threading.Thread(target=arrive)
    writer.start()
    try:
        while len(arrived) < 3 and writer.is_alive():
            threading.Event().wait(0.01)
        at_start = len(arrived)
        seen = _walk(api, "/api/v1/messages", limit=9)
        during = len(arrived) - at_start
    finally:
        stop.set()
        writer.join(timeout=60)
    assert during > 0, "no row arrived while the pages were read"
    assert len(seen) == len(set(seen)), "a row was returned twice"
    assert set(before) <= set(seen), "a row that was there all along was skipped"
    assert set(seen) <= set(before) | set(arrived)


def test_calls_page_with_and_without_start_time(app, hooks, api):
    from tests.payloads import OBD

    for i in range(5):
        hooks.post(dict(OBD, mid=f"mid-{i}", start_at=f"2021-04-09 16:2{i}:00"))
    for i in range(3):
        hooks.post(dict(OBD, mid=f"nostart-{i}", start_at=None))
    rows = []
    cursor = None
    while True:
        body = api(
            "/api/v1/calls", query_string={"limit": 2, **({"cursor": cursor} if cursor else {})}
        ).get_json()
        rows += body["data"]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(rows) == len({r["id"] for r in rows}) == 8
    # Calls without a start time come first (their time is unknown), then newest first.
    assert [r["mid"] for r in rows[3:]] == [f"mid-{i}" for i in range(4, -1, -1)]
    assert all(r["start_at"] is None for r in rows[:3])


def test_cursor_of_another_list_or_filter_is_422(app, api):
    factories.messages(app, 5, mobile="919000000001")
    cursor = api("/api/v1/messages?limit=2&mobile=919000000001").get_json()["next_cursor"]
    assert api(f"/api/v1/messages?limit=2&mobile=919000000001&cursor={cursor}").status_code == 200
    assert api(f"/api/v1/messages?limit=3&mobile=919000000001&cursor={cursor}").status_code == 200
    for path in (
        f"/api/v1/messages?cursor={cursor}",
        f"/api/v1/messages?mobile=919000000002&cursor={cursor}",
        f"/api/v1/inbound?cursor={cursor}",
        f"/api/v1/events?cursor={cursor}",
    ):
        response = api(path)
        assert response.status_code == 422, path
        assert list(response.get_json()["errors"]) == ["cursor"]


@pytest.mark.parametrize("change", ["flip", "truncate", "append"])
def test_tampered_cursor_is_422(app, api, change):
    factories.messages(app, 5)
    cursor = api("/api/v1/messages?limit=2").get_json()["next_cursor"]
    if change == "flip":
        middle = len(cursor) // 2
        cursor = cursor[:middle] + ("A" if cursor[middle] != "A" else "B") + cursor[middle + 1 :]
    elif change == "truncate":
        cursor = cursor[:-3]
    else:
        cursor += "AAAA"
    response = api("/api/v1/messages", query_string={"cursor": cursor})
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["cursor"]


def test_cursor_round_trip_and_refusals():
    filters = {"mobile": "91", "since": factories.T0}
    position = (factories.T0, "id-1")
    cursor = queries.encode_cursor(queries.MESSAGES, filters, position)
    assert queries.decode_cursor(queries.MESSAGES, filters, cursor) == position
    with pytest.raises(queries.CursorError):
        queries.decode_cursor(queries.MESSAGES, {"mobile": "92", "since": factories.T0}, cursor)
    with pytest.raises(queries.CursorError):
        queries.decode_cursor(queries.INBOUND, filters, cursor)
    call_cursor = queries.encode_cursor(queries.CALLS, {}, (None, 5))
    assert queries.decode_cursor(queries.CALLS, {}, call_cursor) == (None, 5)
    with pytest.raises(queries.CursorError):  # a NULL only where the key may be NULL
        queries.decode_cursor(queries.MESSAGES, {}, queries.encode_cursor(queries.MESSAGES, {}, (None, "x")))
