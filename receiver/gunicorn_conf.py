"""gunicorn settings for `web` (Procfile) and `receiver run`; each can be overridden by environment."""

from __future__ import annotations

import multiprocessing
import os

from dotenv import load_dotenv

# Read the same `.env` as the app (settings it does not override), so that VAR_DIR and the WEB_*
# variables below may come from there too.
load_dotenv(os.environ.get("RECEIVER_ENV_FILE", ".env"), override=False)

bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
# gevent's worker, through receiver.server (JSON error answers, secrets kept out of the error log,
# a deadline on request bodies): a connection is a greenlet, so slow or stalled clients (50
# slowloris connections in the tests) hold no thread and no database connection, and a hung
# database or job queue can be given up on (receiver.db, receiver.recordings.queue). Measured by
# bench/ingest against gthread's 2 x 4 threads on a quiet machine (docs/benchmarks.md, "gevent
# against gthread"): the same requests a second and CPU a webhook on PostgreSQL; on SQLite 1.6
# times the requests at a tenth of the median latency, but a longer tail at saturation, as a
# blocking call (SQLite's fsync at commit) stalls the whole process. A request's
# database work still waits on the database, so one process a core uses the cores; the database
# pool (DB_POOL_SIZE, plus twice as many overflow connections) bounds the requests of a process
# at the database at once.
# WEB_WORKER_CLASS=gthread gives the threaded worker, hardened the same way but for the body
# deadline, the hung-database and hung-queue deadlines, and slowloris: a slow client holds one
# of its threads (each thread holds one database connection: DB_POOL_SIZE >= WEB_THREADS).
# Any other value is gunicorn's worker of that name, as is.
_WORKERS = {"gevent": "receiver.server.Worker", "gthread": "receiver.server.ThreadWorker"}
_worker = os.environ.get("WEB_WORKER_CLASS") or "gevent"
worker_class = _WORKERS.get(_worker, _worker)
workers = int(os.environ.get("WEB_CONCURRENCY", max(2, multiprocessing.cpu_count())))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_connections = int(os.environ.get("WEB_CONNECTIONS", "1000"))
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = 20
# A request's line and headers must arrive within this many seconds of the connection opening
# or of the previous answer (gevent's worker closes the connection otherwise); the body then has
# WEB_BODY_TIMEOUT seconds (receiver.server). Idle keep-alive connections close after it too.
keepalive = 5
accesslog = os.environ.get("ACCESS_LOG", "-") or None
# The path without its query string: a callback may carry `?secret=`, which must never be logged.
access_log_format = '%(h)s - - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms'
# Never load the app in the master: each worker opens its own database pool after the fork, and
# under gevent imports the app's libraries only after patching the standard library.
preload_app = False
# gunicorn's control socket (`gunicornc`), by default one a user (~/.gunicorn/gunicorn.ctl)
# that every instance would take from the previous one: one an instance, under VAR_DIR.
control_socket = os.path.abspath(os.path.join(os.environ.get("VAR_DIR") or "var", "gunicorn.ctl"))


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """Leave the loaded app out of garbage collection from now on.

    A full collection otherwise walks every object the app holds (SQLAlchemy's mappers and
    compiled statements, marshmallow's schemas): 60-85 ms on the benchmark machine, which a
    request that triggers one waits for (docs/benchmarks.md, "Query API").
    """
    import gc

    gc.freeze()


def on_starting(server):  # type: ignore[no-untyped-def]
    """Drop the metrics files of processes that are gone (a previous run); keep live ones (a worker)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        import glob

        os.makedirs(folder, exist_ok=True)
        for path in glob.glob(os.path.join(folder, "*_*.db")):
            pid = os.path.basename(path).rsplit("_", 1)[-1].removesuffix(".db")
            try:
                os.kill(int(pid), 0)
            except ValueError:
                continue  # not a per-process file
            except ProcessLookupError:
                os.unlink(path)
            except PermissionError:
                pass  # alive, another user's


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    """Drop a dead worker's live metrics (prometheus-client multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
