"""`receiver run` (or another server) started in a process group of its own by a test: wait until
it is ready, and stop it with everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

import httpx


def wait_ready(process: subprocess.Popen[bytes], url: str, exited: Callable[[], str]) -> httpx.Response:
    """Poll `url` until it answers 200 (60 s at most); fail with `exited()` should the process end."""
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, exited()
        try:
            answer = httpx.get(url, timeout=2)
            if answer.status_code == 200:
                return answer
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "receiver did not become ready"
        time.sleep(0.3)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process's group (web and worker), SIGKILL it after 30 s."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
