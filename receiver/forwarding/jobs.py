"""Forwarding's part of the worker: its loop, registered with the worker's other loops."""

from __future__ import annotations

import threading

from flask import Flask

from .. import jobqueue
from .worker import for_app


def init_app(app: Flask) -> None:
    """Have `receiver worker` run the forwarding loop in a thread of its own."""

    def forward(stop: threading.Event) -> None:
        for_app(app).run_forever(stop)

    jobqueue.add_loop(app, "forwarding", forward)
