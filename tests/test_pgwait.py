"""Under gevent, psycopg connections wait for PostgreSQL on the event loop (receiver/pgwait.py):
the other greenlets of the process run while a statement is under way."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()
    import sys

    import gevent

    from receiver.engine import make_engine
    from receiver.pgwait import GeventConnection

    engine = make_engine(sys.argv[1])
    ticks = []

    def tick():
        while True:
            ticks.append(1)
            gevent.sleep(0.01)

    with engine.connect() as connection:
        assert isinstance(connection.connection.dbapi_connection, GeventConnection)
        ticker = gevent.spawn(tick)
        gevent.sleep(0)
        connection.exec_driver_sql("SELECT pg_sleep(0.5)")
        during = len(ticks)
        ticker.kill()
        value = connection.exec_driver_sql("SELECT %(n)s::int + 1", {"n": 41}).scalar()
    print(during, value)
    """
)


def test_a_statement_under_way_lets_the_other_greenlets_run(migrated):
    if not migrated.startswith("postgresql"):
        pytest.skip("psycopg, PostgreSQL only")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, migrated], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    during, value = done.stdout.split()
    assert int(during) >= 10  # 0.5 s of ticks every 10 ms: the loop was not blocked
    assert value == "42"
