"""The console, through its HTTP interface: sign-in, sessions, CSRF, roles, and the pages."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from receiver.models import RateCounter, RawEvent, ReconcileRun, Role, Status
from tests.console_story import (
    AS_SAID,
    NUMBER,
    PASSWORD,
    SMS_ID,
    Mp3Stub,
    csrf_of,
    post_story,
    sign_in,
    silent_mp3,
    user,
)
from tests.payloads import SMS_DLR


@pytest.fixture
def stub() -> Iterator[Mp3Stub]:
    with Mp3Stub() as server:
        yield server


@pytest.fixture
def settings(settings: dict[str, Any], stub: Mp3Stub) -> dict[str, Any]:
    settings.update(DOWNLOAD_ALLOW_PRIVATE=True, DOWNLOAD_ALLOW_HTTP=True, RECORDING_MAX_ATTEMPTS=1)
    return settings


@pytest.fixture
def story(app, hooks, stub) -> dict[str, Any]:
    return post_story(app, hooks, stub)


@pytest.fixture
def viewer(app, client) -> Any:
    user(app, "vera", Role.viewer)
    assert sign_in(client, "vera").status_code == 302
    return client


@pytest.fixture
def operator(app, client) -> Any:
    user(app, "otto", Role.operator)
    assert sign_in(client, "otto").status_code == 302
    return client


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.mark.parametrize(
    "path", ["/console/", "/console/search?q=1", f"/console/numbers/{NUMBER}", "/console/x/y"]
)
def test_signed_out_every_console_address_leads_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/sign-in?next=")


def test_the_session_cookie_is_httponly_lax_scoped_and_secure_over_https(app, client):
    user(app, "vera", Role.viewer)
    cookie = sign_in(client, "vera").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie
    secure = app.test_client()
    cookie = sign_in(secure, "vera", base_url="https://localhost").headers["Set-Cookie"]
    assert "Secure" in cookie


def test_webhook_and_api_answers_carry_no_session_even_to_a_signed_in_browser(app, client, hooks, api):
    """The session is the console's: a webhook or an API answer neither reads nor sets it (no
    `Vary: Cookie`, no `Set-Cookie`), even with a console cookie in the client's jar."""
    user(app, "vera", Role.viewer)
    sign_in(client, "vera")
    for answer in (hooks.post(dict(SMS_DLR, id="no-session:1")), api("/api/v1/messages")):
        assert answer.status_code == 200
        assert "Vary" not in answer.headers and "Set-Cookie" not in answer.headers


@pytest.mark.parametrize("target", ["/console/\r\nX-Injected: 1", "/console/\x00", "https://evil.example/"])
def test_sign_in_never_follows_a_next_address_a_redirect_cannot_carry(app, client, target):
    user(app, "vera", Role.viewer)
    page = client.get("/console/sign-in")
    response = client.post(
        "/console/sign-in",
        data={
            "name": "vera",
            "password": "correct horse battery",
            "next": target,
            "csrf_token": csrf_of(text(page)),
        },
    )
    assert response.status_code == 302 and response.headers["Location"] == "/console/"
    again = client.get("/console/sign-in", query_string={"next": target})
    assert again.status_code == 302 and again.headers["Location"] == "/console/"


def test_a_post_without_a_valid_csrf_token_is_refused(app, client):
    user(app, "vera", Role.viewer)
    response = client.post("/console/sign-in", data={"name": "vera", "password": "correct horse battery"})
    assert response.status_code == 400
    response = client.post(
        "/console/sign-in", data={"name": "vera", "password": "correct horse battery", "csrf_token": "forged"}
    )
    assert response.status_code == 400
    assert client.get("/console/").status_code == 302  # still signed out


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(app, client):
    user(app, "vera", Role.viewer)
    wrong = sign_in(client, "vera", "not the password")
    unknown = sign_in(client, "nobody", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong name or password" in text(wrong) and "Wrong name or password" in text(unknown)


def test_signing_out_ends_the_session_on_the_server(app, client):
    user(app, "vera", Role.viewer)
    sign_in(client, "vera")
    assert client.get("/console/").status_code == 200
    stolen = client.get_cookie("receiver_console", path="/console").value
    page = text(client.get("/console/"))
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/console/sign-out", data={"csrf_token": token}).status_code == 302
    replayed = app.test_client()
    replayed.set_cookie("receiver_console", stolen, path="/console")
    assert replayed.get("/console/").status_code == 302  # the old cookie is worth nothing


def test_ten_failures_lock_the_user_even_with_the_right_password_for_fifteen_minutes(app, client):
    from receiver.models import SignInFailure

    user(app, "vera", Role.viewer)
    for _ in range(10):
        assert sign_in(client, "vera", "wrong password!").status_code == 401
    locked = sign_in(client, "vera")
    assert locked.status_code == 401 and "too many failed sign-ins" in text(locked)
    with app.extensions["receiver.db"].new_session() as session, session.begin():
        failures = list(session.scalars(sa.select(SignInFailure)))
        assert len(failures) == 10  # the refused attempts while locked did not lengthen the lock
        for failure in failures:  # fifteen minutes pass
            failure.at -= timedelta(minutes=15, seconds=1)
    assert sign_in(client, "vera").status_code == 302


def test_a_locked_user_and_an_unknown_name_get_the_same_answer(app, client):
    user(app, "vera", Role.viewer)
    for _ in range(11):
        locked = sign_in(client, "vera", "wrong password!")
        unknown = sign_in(client, "nobody-here", "wrong password!")
    assert locked.status_code == unknown.status_code == 401
    error = re.compile(r'<p[^>]*role="alert"[^>]*>(.*?)</p>', re.S)
    assert error.search(text(locked)).group(1) == error.search(text(unknown)).group(1)


@pytest.fixture(params=["database", pytest.param("redis", marks=pytest.mark.redis)])
def limit_storage(request, settings) -> Iterator[str]:
    """Where the sign-in counters live: the database, or Redis when REDIS_URL is set."""
    if request.param == "database":
        yield request.param
        return
    prefix = f"receivertest{secrets.token_hex(4)}"
    settings.update(REDIS_URL="redis://127.0.0.1:6379/0", REDIS_PREFIX=prefix)
    yield request.param
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def test_sign_in_attempts_are_limited_per_address_across_processes(limit_storage, app, settings):
    from receiver import create_app

    other = create_app(settings)  # a second process: nothing shared but the database
    user(app, "vera", Role.viewer)
    clients = [app.test_client(), other.test_client()]
    for attempt in range(30):
        response = sign_in(clients[attempt % 2], f"guess{attempt}", "wrong password!")
        assert response.status_code == 401
    refused = sign_in(clients[0], "vera")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    elsewhere = sign_in(app.test_client(), "vera", environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert elsewhere.status_code == 302  # another address is not held back
    if limit_storage == "redis":
        assert list(redis.Redis.from_url(settings["REDIS_URL"]).scan_iter(f"{settings['REDIS_PREFIX']}:*"))
    else:
        with app.extensions["receiver.db"].new_session() as session:
            counts = dict(session.execute(sa.select(RateCounter.key, RateCounter.count)).all())
        assert sorted(counts.values()) == [1, 31]  # the refused attempt counts too
    other.extensions["receiver.db"].engine.dispose()


def test_a_viewer_reads_but_may_not_replay(app, viewer, story):
    event_id = story["quarantined"]
    page = text(viewer.get(f"/console/events/{event_id}"))
    assert "Replay this event" not in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = viewer.post(f"/console/events/{event_id}/replay", data={"csrf_token": token})
    assert response.status_code == 403
    with app.extensions["receiver.db"].new_session() as session:
        assert session.get_one(RawEvent, event_id).replays == 0


def test_an_operator_replays_one_event_and_all_that_match(app, operator, story):
    event_id = story["quarantined"]
    page = text(operator.get("/console/events?state=quarantined"))
    assert f"/console/events/{event_id}" in page and "units" in page  # the validation error
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = operator.post(f"/console/events/{event_id}/replay", data={"csrf_token": token})
    assert response.status_code == 302
    assert "validation failed (422)" in text(operator.get(response.headers["Location"]))
    response = operator.post("/console/events/replay", data={"csrf_token": token, "state": "quarantined"})
    assert response.status_code == 302
    assert "Replayed 1 raw events: quarantined 1. Still waiting: 1." in text(
        operator.get(response.headers["Location"])
    )
    with app.extensions["receiver.db"].new_session() as session:
        assert session.get_one(RawEvent, event_id).replays == 2


@pytest.mark.parametrize("written", [AS_SAID, "00919845012345", "9845012345", "098450 12345"])
def test_a_number_in_any_spelling_leads_to_its_timeline(viewer, story, written):
    response = viewer.get("/console/search", query_string={"q": written})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/console/numbers/{NUMBER}"
    page = text(viewer.get(response.headers["Location"]))
    assert SMS_ID in page and "delivered" in page and "AWAITING-DLR" in page  # the message and its history
    assert "This is a simple text message" in page  # inbound
    assert (
        f"/console/calls/{story['call']}" in page
        and f"/console/recordings/{story['recording']}/audio" in page
    )
    assert "opt-out" in page
    order = [page.index(marker) for marker in ("item-call", "item-inbound", "item-message", "item-opt-out")]
    assert len(order) == 4


def test_a_reference_a_message_id_and_a_mid_are_found(viewer, story):
    assert viewer.get("/console/search?q=order-5521").status_code == 200
    assert SMS_ID in text(viewer.get("/console/search?q=order-5521"))
    assert (
        viewer.get("/console/search", query_string={"q": SMS_ID})
        .headers["Location"]
        .startswith("/console/messages/")
    )
    assert viewer.get("/console/search?q=call-7").headers["Location"] == f"/console/calls/{story['call']}"
    assert "Nothing found" in text(viewer.get("/console/search?q=no-such-thing"))


def test_the_timeline_pages_through_every_item_once(app, viewer):
    from tests.factories import messages

    ids = set(messages(app, 120, mobile=NUMBER))
    seen: list[str] = []
    url = f"/console/numbers/{NUMBER}"
    while url:
        page = text(viewer.get(url))
        seen += re.findall(r'href="/console/messages/([^"]+)"', page)
        found = re.search(r'rel="next" href="([^"]+)"', page)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert len(seen) == len(set(seen)) == 120 and set(seen) == ids
    assert viewer.get(f"/console/numbers/{NUMBER}?cursor=bm90IGEgY3Vyc29y").status_code == 400


def test_a_recording_is_served_with_ranges_for_the_player(viewer, story):
    url = f"/console/recordings/{story['recording']}/audio"
    whole = viewer.get(url)
    assert whole.status_code == 200 and whole.data == silent_mp3()
    assert whole.headers["Content-Type"] == "audio/mpeg" and whole.headers["Accept-Ranges"] == "bytes"
    part = viewer.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == silent_mp3()[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(silent_mp3())}"
    assert viewer.get("/console/recordings/999999/audio").status_code == 404


def test_the_raw_event_page_never_shows_a_secret(app, viewer, hooks):
    body = b"secret=s3cret-portal-webhook&id=x:1&mobile=919845012345&status=DELIVRD&Token=t0ken-value"
    hooks.post(
        body,
        path="/hooks/portal?access_token=qs-token-value",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    event_id = _latest_raw(app)
    with app.extensions["receiver.db"].new_session() as session:
        assert session.get_one(RawEvent, event_id).body == body  # kept byte for byte, secrets and all
    page = text(viewer.get(f"/console/events/{event_id}"))
    for secret in ("s3cret-portal-webhook", "t0ken-value", "qs-token-value"):
        assert secret not in page
    assert "REDACTED" in page and "919845012345" in page
    assert "Authorization" not in page


def test_the_raw_event_page_hides_a_credential_header_stored_before_it_was_redacted(app, viewer, hooks):
    hooks.post(SMS_DLR)
    event_id = _latest_raw(app)
    with app.extensions["receiver.db"].new_session() as session, session.begin():
        raw = session.get_one(RawEvent, event_id)
        raw.headers = {**raw.headers, "X-Webhook-Secret": "older-row-secret"}  # as an older release kept it
    page = text(viewer.get(f"/console/events/{event_id}"))
    assert "older-row-secret" not in page
    assert "X-Webhook-Secret" in page and "REDACTED" in page


def _latest_raw(app) -> int:
    with app.extensions["receiver.db"].new_session() as session:
        return session.scalars(sa.select(RawEvent.id).order_by(RawEvent.id.desc())).first()


def test_the_message_call_and_health_pages(app, viewer, story):
    assert "Status history" in text(viewer.get(f"/console/messages/{SMS_ID}"))
    call = text(viewer.get(f"/console/calls/{story['call']}"))
    assert "<audio" in call and "Retry download" not in call
    with app.extensions["receiver.db"].new_session() as session, session.begin():
        session.add(ReconcileRun(kind="sms", day=date(2026, 1, 2), state="done", seen=120, new_rows=7))
    health = text(viewer.get("/console/health"))
    assert "recordings waiting" in health and "portal" in health
    assert re.search(r"<td>sms</td><td>2026-01-02</td>.*?<td>120</td><td>7</td>", health, re.S)
    assert viewer.get("/console/messages/nope").status_code == 404
    assert viewer.get("/console/calls/99999999").status_code == 404


def test_the_dashboard_draws_the_stats_services_figures(app, viewer):
    from receiver.stats import MessageStatsQuery, message_stats
    from tests.factories import messages

    today = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    messages(app, 8, start=today, status=Status.delivered, provider_status="DELIVRD", mobile=NUMBER)
    messages(app, 2, start=today, status=Status.failed, provider_status="ABSENT-SUB", mobile=NUMBER)
    page = text(viewer.get("/console/dashboard"))
    assert page.count("<svg") == 5
    with app.extensions["receiver.db"].new_session() as session:
        (row,) = message_stats(
            session, MessageStatsQuery(today - timedelta(days=1), today + timedelta(days=1))
        )
    assert row["delivery_rate"] == 0.8
    assert "80.0 %" in page  # the same figure as the stats API
    assert re.search(r"ABSENT-SUB</th><td>2</td>", page)  # failures by provider status
    assert viewer.get("/console/dashboard?since=not-a-date").status_code == 400
    assert viewer.get("/console/dashboard?since=2020-01-01&until=2026-01-01").status_code == 400  # > 400 days


@pytest.mark.parametrize("period", ["until=9999-12-31", "since=9999-12-30&until=9999-12-31"])
def test_the_dashboard_refuses_a_period_at_the_end_of_the_calendar(viewer, period):
    response = viewer.get(f"/console/dashboard?{period}")
    assert response.status_code == 400
    assert "must be" in text(response)


@pytest.fixture(params=[0, 1], ids=["no proxy trusted", "one proxy trusted"])
def proxies(request, settings) -> int:
    settings["TRUSTED_PROXIES"] = request.param
    return int(request.param)


def test_a_client_address_from_a_proxy_is_believed_only_when_proxies_are_trusted(proxies, app):
    """Behind one proxy (TRUSTED_PROXIES=1) each client has its own sign-in limit and a webhook's
    address is its sender's; without the setting X-Forwarded-For is the client's own word:
    changing it escapes nothing, and it is not stored as the address."""
    from receiver.sources import add_source

    user(app, "vera", Role.viewer)
    proxy = {"REMOTE_ADDR": "10.0.0.2"}

    def through_proxy(name: str, password: str, client: str) -> Any:
        headers = {"X-Forwarded-For": client}
        return sign_in(app.test_client(), name, password, headers=headers, environ_base=proxy)

    for attempt in range(30):
        assert through_proxy(f"guess{attempt}", "wrong password!", "203.0.113.7").status_code == 401
    assert through_proxy("vera", PASSWORD, "203.0.113.7").status_code == 429
    assert through_proxy("vera", PASSWORD, "203.0.113.8").status_code == (302 if proxies else 429)

    with app.extensions["receiver.db"].new_session() as session:
        secret = add_source(session, "behind", secret="behind-secret-0123456789").secret

    def webhook(status: str, client: str) -> str:
        answer = app.test_client().post(
            "/hooks/behind",
            json={**SMS_DLR, "status": status},
            headers={"Authorization": f"Bearer {secret}", "X-Forwarded-For": client},
            environ_base=proxy,
        )
        assert answer.status_code == 200
        with app.extensions["receiver.db"].new_session() as session:
            return session.scalars(sa.select(RawEvent.remote_addr).order_by(RawEvent.id.desc())).first()

    assert webhook("DELIVRD", "203.0.113.9") == ("203.0.113.9" if proxies else "10.0.0.2")
    # What the believed hop says must be an address: else the proxy's own is kept.
    assert webhook("EXPIRED", "not an address; " * 10) == "10.0.0.2"
