"""The key that signs console session cookies and CSRF tokens.

SECRET_KEY when set (it must be, and the same, on every machine of a deployment); else a key
generated into VAR_DIR the first time one is needed and read from there afterwards. Several
processes starting at once agree on one key: each writes a candidate to a file of its own and
links it into place, which succeeds for exactly one of them; the others read the winner's.
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from flask import Flask

FILE_NAME = "secret_key"
_LOCK = threading.Lock()


def _read(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def generated_key(var_dir: str | Path) -> str:
    """The key kept in `var_dir`, made there (atomically, readable by the owner only) if missing."""
    path = Path(var_dir) / FILE_NAME
    found = _read(path)
    if found is not None:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate = path.with_name(f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(48) + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(candidate, path)  # never replaces: the first process to get here wins
        except FileExistsError:
            pass
    finally:
        candidate.unlink(missing_ok=True)
    found = _read(path)
    if found is None:
        raise RuntimeError(f"{path} is empty: remove it, or set SECRET_KEY")
    return found


def ensure_secret_key(app: Flask) -> None:
    """Give the app its secret key on first use (not at start: a command that never serves
    the console leaves no file behind)."""
    if app.secret_key:
        return
    with _LOCK:
        if not app.secret_key:
            app.secret_key = app.config.get("SECRET_KEY") or generated_key(app.config["VAR_DIR"])
