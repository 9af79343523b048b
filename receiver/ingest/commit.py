"""Group commit: the concurrent webhooks of a process share one transaction and one COMMIT.

A webhook hands its writes over as a job and waits. A waiting job that finds a writer's place free
(one on SQLite, DB_POOL_SIZE on PostgreSQL) leads a batch: it takes every job waiting (at most
MAX_BATCH), runs them, commits once, and only then wakes the batch's jobs with their results.
Jobs run one after the other without savepoints, one statement less each; should one fail but
for the database failing (a bug), the transaction is rolled back and the batch written again
with a savepoint a job, so that the failing one is rolled back (and its fallback run) alone.
Under gevent many webhooks wait at once, so one COMMIT (SQLite's fsync, PostgreSQL's WAL flush)
serves ten or more; under threads, fewer; alone, a batch is one job, as a transaction of its own
would be.

A batch may begin with one write for all its jobs (`prelude`: webhook ingest's raw requests in
one multi-row INSERT), whose result for each job is handed to it, when it runs without
savepoints; written again, each job does that write itself (it is handed None). It may end with
one more write for all its jobs (`finish`: webhook ingest's outbox rows, one
statement a batch rather than one a job), after the last job and before the COMMIT. Should it
fail but for the database failing, the batch is written again with `finish` run for each job
inside the job's own savepoint, so that again one failing job touches no other.

Nothing is answered before the COMMIT: should it fail, or the process die before it, every job
of the batch fails (503, or no answer at all) and nothing of them is stored. A lost connection,
a deadlock or a serialization failure runs the whole batch again (every write is idempotent);
a COMMIT applied just before the connection was lost makes the next try find the requests
stored and answer `duplicate`.

On SQLite the writer lock is taken first (BEGIN IMMEDIATE) and, under gevent, waited for in
gevent's thread pool, as is the COMMIT's fsync: another process holding the lock stalls this
batch, not the event loop. On PostgreSQL, the database's own deadline bounds every wait
(receiver.db.answering_within).
"""

from __future__ import annotations

import enum
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from ..db import within_deadline
from ..deadline import cooperative

log = logging.getLogger(__name__)

T = TypeVar("T")
# A batch's savepoints that write each take a subtransaction id on PostgreSQL; past 64 in one
# transaction, other sessions' snapshots must look them up on disk.
MAX_BATCH = 30
# PostgreSQL's deadlock and serialization failures: the transaction is rolled back whole and
# is safe to run again. So is a lost connection (the pool renews it).
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
_ATTEMPTS = 3


@dataclass
class _Job(Generic[T]):
    work: Callable[[sa.Connection, Any], T]
    fallback: Callable[[sa.Connection, Any], T] | None = None
    payload: Any = None  # what `prelude` writes for it
    wake: threading.Event = field(default_factory=threading.Event)
    chosen: bool = False  # handed a writer's place: lead the next batch
    finished: bool = False
    result: Any = None
    error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[no-any-return]


class GroupCommit:
    """The write transactions of one process, committed in groups, at most `writers` at once."""

    def __init__(
        self,
        engine: sa.Engine,
        wait_timeout: float,
        writers: int = 1,
        max_batch: int = MAX_BATCH,
        prelude: Callable[[sa.Connection, list[Any]], list[Any]] | None = None,
        finish: Callable[[sa.Connection, list[Any]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.prelude = prelude
        self.finish = finish
        self.wait_timeout = wait_timeout
        self.sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time anyway.
        self.writers = 1 if self.sqlite else max(1, writers)
        self.max_batch = max_batch
        if self.sqlite:
            self._turns = _WriterTurns(f"{engine.url.database}.writer-lock")
        self._lock = threading.Lock()
        self._queue: list[_Job[Any]] = []
        self._leaders = 0

    def waiting(self) -> int:
        """How many jobs wait for a batch to take them."""
        with self._lock:
            return len(self._queue)

    def run(
        self,
        work: Callable[[sa.Connection, Any], T],
        fallback: Callable[[sa.Connection, Any], T] | None = None,
        payload: Any = None,
    ) -> T:
        """Run `work` in a batch's transaction; return its result once committed.

        `work` is handed what `prelude` wrote of `payload` with the other jobs' payloads (None
        when the batch is written with savepoints, or without a `prelude` or a payload);
        `fallback` is always handed None.

        Should `work` raise (but for the database failing: then the whole batch fails or runs
        again), what it wrote is rolled back, and `fallback`, if given, runs instead; the other
        jobs of the batch are kept. Either may run more than once (when the batch is written
        again): their writes must be idempotent, and they must have no effect outside the
        transaction but on the result they return.
        """
        job: _Job[T] = _Job(work, fallback, payload)
        with self._lock:
            self._queue.append(job)
            leading = self._leaders < self.writers
            self._leaders += leading
        while True:
            if not leading:
                job.wake.wait()  # its batch is committed, or a writer's place is handed to it
                with self._lock:
                    job.wake.clear()
                    leading, job.chosen = job.chosen, False
                if not leading:
                    return job.outcome()
            self._lead()
            leading = False
            if job.finished:  # in its own batch, or in another leader's meanwhile
                return job.outcome()

    def _lead(self) -> None:
        """Write a batch of what waits (on a writer's place held), then hand the place on."""
        with self._lock:
            batch = self._queue[: self.max_batch]
            del self._queue[: len(batch)]
        try:
            if batch:
                self._write(batch)
        finally:
            with self._lock:
                for taken in batch:
                    taken.finished = True
                    taken.wake.set()
                if self._queue:
                    following = self._queue[0]
                    following.chosen = True
                    following.wake.set()
                else:
                    self._leaders -= 1

    def _write(self, batch: list[_Job[Any]]) -> None:
        mode = _Mode.BARE
        attempt = 0
        while attempt < _ATTEMPTS:
            attempt += 1
            try:
                self._transaction(batch, mode)
                return
            except _Again as again:  # a job or `finish` failed (not the database): isolate them
                if again.mode is _Mode.ALONE:
                    log.error("ending a batch failed (%r); writing each of its jobs alone", again.cause)
                mode, attempt = again.mode, attempt - 1
                continue
            except sa.exc.OperationalError as exc:
                reason = (
                    "connection lost" if exc.connection_invalidated else getattr(exc.orig, "sqlstate", None)
                )
                if (exc.connection_invalidated or reason in _RETRYABLE_SQLSTATES) and attempt < _ATTEMPTS:
                    log.warning("ingest transaction: %s (attempt %d); running it again", reason, attempt)
                    continue
                error: BaseException = exc
            except BaseException as exc:  # noqa: BLE001 - handed to every job of the batch
                error = exc
            for job in batch:
                job.result, job.error = None, error
            return

    def _transaction(self, batch: list[_Job[Any]], mode: _Mode) -> None:
        if self.sqlite:
            with self._turns.held(), self.engine.connect() as connection:
                self._sqlite_transaction(connection, batch, mode)
            return
        opened: list[sa.Connection] = []
        with within_deadline(self.wait_timeout, lambda: invalidate(opened)):
            with self.engine.connect() as connection:
                opened.append(connection)
                with connection.begin():
                    self._run_all(connection, batch, mode)

    def _sqlite_transaction(self, connection: sa.Connection, batch: list[_Job[Any]], mode: _Mode) -> None:
        transaction = connection.begin()  # the driver's BEGIN is ours, IMMEDIATE: the writer lock
        try:
            raw = connection.connection.dbapi_connection
            assert raw is not None
            _begin_immediate(raw)
            self._run_all(connection, batch, mode)
            _blocking(transaction.commit)
        except BaseException:
            transaction.rollback()
            raise

    def _run_all(self, connection: sa.Connection, batch: list[_Job[Any]], mode: _Mode) -> None:
        """The batch's jobs and `finish`, as `mode` says."""
        finish = self.finish
        if mode is _Mode.BARE:
            try:
                written = self._prelude(connection, batch)
                for job, prepared in zip(batch, written, strict=True):
                    job.result, job.error = None, None
                    job.result = job.work(connection, prepared)
            except sa.exc.OperationalError:
                raise
            except Exception as exc:  # the transaction is rolled back, then written isolated
                raise _Again(_Mode.ISOLATED, exc) from exc
        else:
            self._isolated(connection, batch, finish if mode is _Mode.ALONE else None)
        if finish is not None and mode is not _Mode.ALONE:
            try:
                finish(connection, [job.result for job in batch if job.error is None])
            except sa.exc.OperationalError:
                raise
            except Exception as exc:  # the transaction is rolled back, then written job by job
                raise _Again(_Mode.ALONE, exc) from exc

    def _prelude(self, connection: sa.Connection, batch: list[_Job[Any]]) -> list[Any]:
        """What `prelude` wrote for each job's payload (None for a job without one)."""
        with_payload = [job for job in batch if job.payload is not None]
        if self.prelude is None or not with_payload:
            return [None] * len(batch)
        written = iter(self.prelude(connection, [job.payload for job in with_payload]))
        return [next(written) if job.payload is not None else None for job in batch]

    @staticmethod
    def _isolated(
        connection: sa.Connection,
        batch: list[_Job[Any]],
        one_by_one: Callable[[sa.Connection, list[Any]], None] | None,
    ) -> None:
        """Each job in a savepoint of its own (with `one_by_one` of its result, if given): a job
        that fails is rolled back alone, and its fallback runs in a savepoint instead."""
        for job in batch:
            job.result, job.error = None, None
            try:
                job.result = _in_savepoint(connection, job.work, one_by_one)
                continue
            except sa.exc.OperationalError:
                raise  # the transaction may be gone: the whole batch fails or runs again
            except Exception as exc:  # its savepoint was rolled back: this job fails alone
                if job.fallback is None:
                    job.error = exc
                    continue
                log.exception("a write failed; its fallback runs instead")
            try:
                job.result = _in_savepoint(connection, job.fallback, one_by_one)
            except sa.exc.OperationalError:
                raise
            except Exception as exc:
                job.error = exc


class _Mode(enum.Enum):
    """How a batch is written: each try isolates more than the one before."""

    BARE = "no savepoints, `finish` once"
    ISOLATED = "a savepoint a job, `finish` once"
    ALONE = "a savepoint a job, `finish` within each"


class _Again(Exception):
    """A job or `finish` failed (not the database): the batch is to be written again in `mode`."""

    def __init__(self, mode: _Mode, cause: Exception) -> None:
        super().__init__(repr(cause))
        self.mode = mode
        self.cause = cause


def _in_savepoint(
    connection: sa.Connection,
    work: Callable[[sa.Connection, Any], T],
    finish: Callable[[sa.Connection, list[Any]], None] | None = None,
) -> T:
    """`work` (then `finish` of its result) after a SAVEPOINT, rolled back to it should either raise.

    Never released: the COMMIT ends them all, and a RELEASE a job would be one more round trip
    on PostgreSQL. Each takes the same name; ROLLBACK TO goes to the latest of that name.
    """
    connection.exec_driver_sql("SAVEPOINT job")
    try:
        result = work(connection, None)
        if finish is not None:
            finish(connection, [result])
        return result
    except sa.exc.OperationalError:
        raise
    except Exception:
        connection.exec_driver_sql("ROLLBACK TO SAVEPOINT job")
        raise


def invalidate(connections: list[sa.Connection]) -> None:
    for connection in connections:
        if not connection.closed and not connection.invalidated:
            connection.invalidate()


class _WriterTurns:
    """Web processes take turns at SQLite's writer lock through a lock on a file beside the
    database: the kernel hands it to the next process the moment it is let go, where SQLite's
    own busy handler sleeps a waiting process up to 100 ms between tries. Other writers (the
    worker, commands) do without it and wait through the busy handler as before."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid: int | None = None

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked process opens its own
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    @contextmanager
    def held(self) -> Iterator[None]:
        fd = self._file()
        try:  # free (the common case): no trip to the thread pool
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _blocking(fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def _begin_immediate(raw: Any) -> None:
    """BEGIN IMMEDIATE: at once when the writer lock is free, else waited for in the thread pool
    (through the busy handler: a writer of another kind, the worker or a command, holds it)."""
    (timeout,) = raw.execute("PRAGMA busy_timeout").fetchone()
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        raw.execute("BEGIN IMMEDIATE")
        return
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(timeout)}")
    _blocking(raw.execute, "BEGIN IMMEDIATE")


def _blocking(function: Callable[..., Any], *args: Any) -> Any:
    """Call `function`; under gevent in its thread pool, so that the event loop runs meanwhile."""
    if cooperative():
        import gevent

        return gevent.get_hub().threadpool.apply(function, args)
    return function(*args)
