"""`receiver run`: migrate, then run web (gunicorn) and worker together until one stops."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from . import migrate


def _processes(bind: str) -> dict[str, list[str]]:
    bindir = Path(sys.executable).parent
    conf = Path(__file__).with_name("gunicorn_conf.py")
    return {
        # The factory rather than wsgi.py, so that `receiver run` works from any folder.
        "web": [str(bindir / "gunicorn"), "--config", str(conf), "--bind", bind, "receiver:create_app()"],
        "worker": [str(bindir / "receiver"), "worker"],
    }


@click.command("run")
@click.option(
    "--bind", default=lambda: os.environ.get("BIND", "127.0.0.1:8000"), show_default="127.0.0.1:8000"
)
@with_appcontext
def run_command(bind: str) -> None:
    """Migrate the database, then start web and worker; stop both on Ctrl-C or if one dies."""
    config = current_app.config
    migrate.upgrade(config["DATABASE_URL"])
    metrics_dir = Path(config["VAR_DIR"]) / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir.resolve())}
    children = {name: subprocess.Popen(argv, env=env) for name, argv in _processes(bind).items()}
    click.echo(f"receiver: web on http://{bind}, worker started (Ctrl-C stops both)")

    def stop(*_: object) -> None:
        for child in children.values():
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        while all(child.poll() is None for child in children.values()):
            time.sleep(0.5)
    finally:
        stop()
        for name, child in children.items():
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
            if child.returncode not in (0, -signal.SIGTERM, None):
                click.echo(f"receiver: {name} exited with {child.returncode}", err=True)
                code = 1
    sys.exit(code)
