"""`receiver run`: migrate, then run web (gunicorn) and worker together until one stops."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from . import migrate, sources
from .db import get_db
from .wording import duration


def _processes(bind: str) -> dict[str, list[str]]:
    conf = Path(__file__).with_name("gunicorn_conf.py")
    # Through this interpreter (`-m`), not scripts beside it: `pip install --user` puts scripts
    # elsewhere. The factory rather than wsgi.py, so that `receiver run` works from any folder.
    python = sys.executable
    return {
        "web": [python, "-m", "gunicorn", "--config", str(conf), "--bind", bind, "receiver:create_app()"],
        "worker": [python, "-m", "receiver", "worker"],
    }


def check_bind(bind: str) -> None:
    """Refuse, in one line, an address web cannot listen on (a port in use, a host not on this
    machine), before anything starts; gunicorn would retry for seconds, then stop the service."""
    if bind.startswith(("unix:", "fd://")) or ":" not in bind:
        return  # gunicorn's other address forms: it says itself what is wrong with them
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    if not port.isdigit():
        return
    # As gunicorn binds it: IPv6 for an IPv6 literal, else IPv4; SO_REUSEADDR, so that only a
    # listening socket (not one in TIME_WAIT) counts as in use.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise click.ClickException(
                    f"{bind} is in use (another receiver, or another program?): "
                    "pick another address with --bind HOST:PORT or the BIND setting"
                ) from None
            raise click.ClickException(f"cannot listen on {bind}: {exc.strerror or exc}") from None
        except (OverflowError, UnicodeError) as exc:  # a port over 65535, a host name IDNA refuses
            raise click.ClickException(f"cannot listen on {bind}: {exc}") from None


def start_notices(config: Mapping[str, Any], bind: str) -> list[str]:
    """What a new user must know when the service starts, one line each."""
    notices = [f"web on http://{bind}, worker started (Ctrl-C stops both)"]
    host = bind.rpartition(":")[0].strip("[]")
    if host in ("127.0.0.1", "localhost", "::1"):
        notices.append(
            f"listening on {host} only: the provider reaches it through a TLS proxy on this machine "
            "(or --bind 0.0.0.0:8000 behind one elsewhere)"
        )
    with get_db().new_session() as session:
        if not sources.list_sources(session):
            notices.append("no sources yet: `receiver sources add NAME` prints a callback URL and its secret")
    if not config.get("PROVIDER_ACCESS_TOKEN"):
        ttl = duration(config["RECORDING_URL_TTL"])
        notices.append(
            "PROVIDER_ACCESS_TOKEN is not set: a recording not downloaded before its URL expires "
            f"({ttl} after the call) cannot be fetched again"
        )
    return notices


@click.command("run")
@click.option(
    "--bind", default=lambda: os.environ.get("BIND", "127.0.0.1:8000"), show_default="127.0.0.1:8000"
)
@with_appcontext
def run_command(bind: str) -> None:
    """Migrate the database, then start web and worker; stop both on Ctrl-C or if one dies."""
    config = current_app.config
    check_bind(bind)
    migrate.upgrade(config["DATABASE_URL"])
    metrics_dir = Path(config["VAR_DIR"]) / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir.resolve())}
    children = {name: subprocess.Popen(argv, env=env) for name, argv in _processes(bind).items()}
    for notice in start_notices(config, bind):
        click.echo(f"receiver: {notice}")

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
