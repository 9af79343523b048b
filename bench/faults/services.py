"""The harness's own PostgreSQL, Redis and receiver processes, each of which a fault can hit.

The machine's shared PostgreSQL and Redis are never touched: the harness runs a PostgreSQL
cluster (initdb into a temporary folder, as the `postgres` user when run as root) and a
redis-server of its own, on free ports of 127.0.0.1, and stops them at the end.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def descendants(pid: int) -> list[int]:
    """The pids of a process's children, grandchildren, ... (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def signal_tree(pid: int, sig: int) -> None:
    for target in [pid, *descendants(pid)]:
        try:
            os.kill(target, sig)
        except ProcessLookupError:
            pass


class Postgres:
    """A PostgreSQL cluster of the harness's own: start, stop, restart, hang (SIGSTOP), resume."""

    def __init__(self, root: Path) -> None:
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not versions:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = Path(versions[-1])
        self.data = root / "pgdata"
        self.port = free_port()
        self.log = root / "postgres.log"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.data.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
            shutil.chown(self.data, "postgres")
        self._as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"])
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n"
                "fsync = on\nautovacuum = on\nmax_connections = 200\n"
            )

    def _as_postgres(self, argv: list[str]) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(prefix + argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _ctl(self, *args: str) -> None:
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", *args])

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop", "-m", "immediate")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def postmaster(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def hang(self) -> None:
        """Freeze the postmaster and every backend: connections stay open, nothing answers."""
        signal_tree(self.postmaster(), signal.SIGSTOP)

    def resume(self) -> None:
        signal_tree(self.postmaster(), signal.SIGCONT)

    def close(self) -> None:
        try:
            self.resume()
            self.stop()
        except (OSError, ValueError, subprocess.CalledProcessError):
            pass


class Redis:
    """A redis-server of the harness's own, keeping nothing on disk."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = root / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def hang(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.process is not None:
            self.resume()
            self.stop()


class Receiver:
    """receiver's processes as the Procfile runs them: `web` (gunicorn) and `worker`."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        metrics = root / "prometheus"
        metrics.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            "VAR_DIR": str(root / "var"),
            "RECORDINGS_DIR": str(root / "recordings"),
            "BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": "2",
            "LOG_LEVEL": "WARNING",
            **env,
        }
        self.web: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        return subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def migrate(self) -> None:
        subprocess.run(
            [str(BIN / "receiver"), "db", "upgrade"], cwd=REPO, env=self.env, check=True, capture_output=True
        )

    def add_source(self, name: str) -> str:
        done = subprocess.run(
            [str(BIN / "receiver"), "sources", "add", name],
            cwd=REPO,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip().splitlines()[-1]

    def start_web(self) -> None:
        # The Procfile's web line: gunicorn with receiver's config, serving wsgi:app.
        conf = REPO / "receiver" / "gunicorn_conf.py"
        self.web = self._spawn("web", [str(BIN / "gunicorn"), "--config", str(conf), "wsgi:app"])
        wait_port(self.port)

    def start_worker(self) -> None:
        self.workers.append(self._spawn("worker", [str(BIN / "receiver"), "worker"]))

    def web_workers(self) -> list[int]:
        """gunicorn's worker processes (the master restarts one that dies)."""
        assert self.web is not None
        return [pid for pid in descendants(self.web.pid) if pid != self.web.pid]

    def kill_workers(self) -> None:
        """kill -9 every `receiver worker` process (and its children)."""
        for worker in self.workers:
            signal_tree(worker.pid, signal.SIGKILL)
            worker.wait()
        self.workers = []

    def kill_all(self) -> None:
        """kill -9 the whole service: the gunicorn master, its workers and the worker."""
        if self.web is not None:
            signal_tree(self.web.pid, signal.SIGKILL)
            self.web.wait()
            self.web = None
        self.kill_workers()

    def close(self) -> None:
        for process in [self.web, *self.workers]:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in [self.web, *self.workers]:
            if process is not None:
                try:
                    process.wait(timeout=25)
                except subprocess.TimeoutExpired:
                    signal_tree(process.pid, signal.SIGKILL)
                    process.wait()
        self.web, self.workers = None, []
