"""How long one large JSON array of delivery reports holds ingest, and what it does to other webhooks.

In one process (Flask's test client, no network, no gunicorn): a fresh SQLite database (or the
PostgreSQL database given with --pg), a source, then for each array size: the time to decode and
validate the body, the time of the whole request and of its write transaction (which holds
SQLite's single writer lock), and the answer times of single reports sent one after the other
from another thread while the array is being stored (the stall every other webhook sees). Items
are the smallest delivery reports that are still understood, so 1 MB holds ~18,000.

    .venv/bin/python bench/arrays.py                                 # 1,000 and 18,000 items
    MAX_EVENTS_PER_REQUEST=20000 .venv/bin/python bench/arrays.py    # let 18,000 in

Bounded: each size is sent once, the side thread stops when the array is answered.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from typing import Any

from receiver import create_app, migrate
from receiver.ingest import payloads
from receiver.ingest import service as ingest
from receiver.sources import add_source


def items(count: int, prefix: str) -> bytes:
    reports = [{"id": f"{prefix}{i:07x}:1", "mobile": "91", "status": "DELIVRD"} for i in range(count)]
    return json.dumps(reports, separators=(",", ":")).encode()


STORE_SECONDS: list[float] = []
_store = ingest._store


def _timed_store(*args: Any, **kwargs: Any) -> Any:
    """ingest's write transaction, the part that holds SQLite's single writer, timed."""
    started = time.perf_counter()
    try:
        return _store(*args, **kwargs)
    finally:
        STORE_SECONDS.append(time.perf_counter() - started)


ingest._store = _timed_store  # measuring only: the same function, timed


def run(size: int, app: Any, secret: str, round_: int, max_events: int) -> dict[str, Any]:
    body = items(size, f"r{round_}-")
    started = time.perf_counter()
    try:
        payloads.read({"Content-Type": "application/json"}, "", body, None, max_events)
    except payloads.PayloadError:
        pass  # over MAX_EVENTS_PER_REQUEST: refused before validating
    parse = time.perf_counter() - started

    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    done = threading.Event()
    singles: list[float] = []

    def side() -> None:
        client = app.test_client()
        n = 0
        while not done.is_set() and n < 10_000:
            one = json.dumps({"id": f"s{round_}-{n}:1", "mobile": "91", "status": "DELIVRD"})
            t = time.perf_counter()
            client.post("/hooks/bench", data=one, headers=headers)
            singles.append(time.perf_counter() - t)
            n += 1

    thread = threading.Thread(target=side)
    client = app.test_client()
    started = time.perf_counter()
    thread.start()
    STORE_SECONDS.clear()
    response = client.post("/hooks/bench", data=body, headers=headers)
    total = time.perf_counter() - started
    store = max(STORE_SECONDS)
    done.set()
    thread.join()
    return {
        "items": size,
        "bytes": len(body),
        "code": response.status_code,
        "decode_validate_s": round(parse, 3),
        "request_s": round(total, 3),
        "write_transaction_s": round(store, 3),
        "single_reports_during": len(singles),
        "single_max_s": round(max(singles), 3) if singles else None,
        "single_median_s": round(statistics.median(singles), 3) if singles else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,18000")
    parser.add_argument("--pg", help="a PostgreSQL URL of a database to use (its tables are created)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-arrays-")
    url = args.pg or f"sqlite:///{folder}/receiver.db"
    migrate.upgrade(url)
    config: dict[str, Any] = {
        "DATABASE_URL": url,
        "VAR_DIR": folder,
        "RECORDINGS_DIR": folder,
        "ARCHIVE_DIR": folder,
        "REDIS_URL": None,
    }
    app = create_app(config)
    with app.extensions["receiver.db"].new_session() as session:
        secret = add_source(session, "bench", secret="bench-secret-0123").secret
    for round_, size in enumerate(int(s) for s in args.sizes.split(",")):
        result = run(size, app, secret, round_, app.config["MAX_EVENTS_PER_REQUEST"])
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
