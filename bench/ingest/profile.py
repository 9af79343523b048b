"""Where a webhook's CPU goes: py-spy samples receiver's gunicorn workers under a burst of unique
SMS reports (only the thread holding the GIL: Python's CPU, not its waits), and each sample is
charged to a layer: that of its innermost frame outside the standard library (json excepted), so
that a date parsed for marshmallow counts as marshmallow's.

    .venv/bin/pip install py-spy
    .venv/bin/python bench/ingest/profile.py --database sqlite --seconds 15
    .venv/bin/python bench/ingest/profile.py --database postgresql --seconds 15

Runs the Procfile's `web` line on 127.0.0.1 (as bench/ingest/run.py does), warms it up, then
samples every worker for `--seconds` while wrk sends reports. Prints the share of samples per
layer (and the top functions); the collapsed stacks stay in var/bench/profile-<time>/.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import run  # noqa: E402

# (layer, a piece of the innermost frame's file path or name), first match wins.
LAYERS = [
    ("receiver: ingest", "(receiver/ingest/"),
    ("receiver: metrics", "(receiver/metrics.py"),
    ("receiver: other", "(receiver/"),
    ("marshmallow", "(marshmallow/"),
    ("SQLAlchemy", "(sqlalchemy/"),
    ("sqlite3 (driver and library)", "sqlite3"),
    ("psycopg (driver and libpq)", "(psycopg"),
    ("prometheus-client", "(prometheus_client/"),
    ("werkzeug", "(werkzeug/"),
    ("Flask", "(flask/"),
    ("gunicorn", "(gunicorn/"),
    ("gevent (loop, greenlets, thread pool)", "(gevent/"),
    ("json", "(json/"),
]


REST = "Python standard library and the rest"


def layer_of(frame: str) -> str:
    for name, marker in LAYERS:
        if marker in frame:
            return name
    return REST


def _layer_of_stack(frames: list[str]) -> str:
    for frame in reversed(frames):
        layer = layer_of(frame)
        if layer != REST:
            return layer
    return REST


def breakdown(collapsed: list[Path]) -> tuple[Counter[str], Counter[str], int]:
    layers: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for path in collapsed:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            frames = stack.split(";")
            leaf = frames[-1]
            # The event loop waiting in epoll, a thread waiting for work: idle, not CPU.
            if leaf.startswith(("Hub.run (", "Waiter.get (", "poll.poll (", "_worker (gevent/threadpool")):
                continue
            layers[_layer_of_stack(frames)] += int(count)
            leaves[leaf] += int(count)
            total += int(count)
    return layers, leaves, total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=int, default=250, help="samples a second")
    args = parser.parse_args()
    py_spy = run.BIN / "py-spy"
    if not py_spy.exists():
        sys.exit("py-spy is missing: .venv/bin/pip install py-spy")
    run.ensure_wrk()
    workdir = (run.REPO / "var" / "bench" / f"profile-{datetime.now(UTC):%Y%m%d-%H%M%S}").resolve()
    workdir.mkdir(parents=True)
    env = {
        **os.environ,
        "PATH": f"{run.BIN}:{os.environ.get('PATH', '')}",
        "VAR_DIR": str(workdir / "var"),
        "RECEIVER_ENV_FILE": str(workdir / "no.env"),
    }
    env.pop("REDIS_URL", None)
    secret = secrets.token_urlsafe(24)
    with run.database(args.database, "profile", workdir) as url:
        run.prepare("receiver", url, env, secret)
        port = run.free_port()
        with run.server("receiver", url, env, workdir, port) as process:
            load = {"mode": "burst", "secret": secret, "connections": args.connections}
            run.wrk(port, workdir / "warmup", tag="profile-w", duration=3, **load)  # type: ignore[arg-type]
            workers = subprocess.run(
                ["pgrep", "-g", str(process.pid), "-f", "gunicorn"], capture_output=True, text=True
            ).stdout.split()
            workers = [pid for pid in workers if _is_worker(pid)]
            outputs = [workdir / f"worker-{pid}.txt" for pid in workers]
            spies = [
                subprocess.Popen(
                    [
                        str(py_spy),
                        "record",
                        "--pid",
                        pid,
                        "--duration",
                        str(int(args.seconds)),
                        "--rate",
                        str(args.rate),
                        "--format",
                        "raw",
                        "--output",
                        str(out),
                        "--gil",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for pid, out in zip(workers, outputs, strict=True)
            ]
            time.sleep(0.5)
            result = run.wrk(port, workdir / "load", tag="profile", duration=args.seconds, **load)  # type: ignore[arg-type]
            for spy in spies:
                spy.wait(timeout=args.seconds + 60)
    layers, leaves, total = breakdown([out for out in outputs if out.exists()])
    print(
        f"{args.database}: {result['rps']:.0f} req/s while sampled; {total} samples in {len(workers)} workers"
    )
    print("| layer | share of CPU samples |\n|---|---:|")
    for name, count in layers.most_common():
        print(f"| {name} | {100 * count / max(total, 1):.1f}% |")
    print("\ntop functions (innermost frame):")
    for leaf, count in leaves.most_common(25):
        print(f"  {100 * count / max(total, 1):5.1f}%  {leaf}")


def _is_worker(pid: str) -> bool:
    """A gunicorn worker: its parent is a gunicorn process too (the master's is the shell)."""
    status = Path(f"/proc/{pid}/status").read_text()
    parent = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid"))
    try:
        return b"gunicorn" in Path(f"/proc/{parent}/cmdline").read_bytes()
    except OSError:
        return False


if __name__ == "__main__":
    main()
