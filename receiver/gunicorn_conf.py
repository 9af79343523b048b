"""gunicorn settings for `web` (Procfile) and `receiver run`; each can be overridden by environment."""

from __future__ import annotations

import multiprocessing
import os

bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
# Measured by bench/ingest (docs/benchmarks.md, "Ingest"): a request spends much of its time
# waiting on the database (a commit's fsync, a round trip), so threads overlap that wait within a
# process; one process a core uses the cores. Against 2*cores+1 sync workers it answered as many
# requests a second on SQLite and up to twice as many on PostgreSQL, with fewer processes and
# database connections, and keep-alive (which sync workers lack) saved ~15% of CPU a request.
# Each thread holds one database connection (two during a CSV export, which streams on a
# connection of its own): DB_POOL_SIZE >= WEB_THREADS, and the pool's overflow covers exports.
worker_class = os.environ.get("WEB_WORKER_CLASS", "gthread")
workers = int(os.environ.get("WEB_CONCURRENCY", max(2, multiprocessing.cpu_count())))
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
accesslog = os.environ.get("ACCESS_LOG", "-") or None
# The path without its query string: a callback may carry `?secret=`, which must never be logged.
access_log_format = '%(h)s - - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms'
# Never load the app in the master: each worker opens its own database pool after the fork.
preload_app = False


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
