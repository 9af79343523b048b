"""Settings: defaults, overridden by the environment (and a `.env` file), overridden by the caller."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import load_dotenv

from .numbers import DEFAULT_COUNTRY_CODE, parse_country_code


def _bool(value: str) -> bool:
    if value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if value.strip().lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _clock(value: str) -> tuple[int, int]:
    """`HH:MM` (24-hour) as (hour, minute)."""
    hour, sep, minute = value.strip().partition(":")
    if not (sep and hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
        raise ValueError(f"not a time of day HH:MM: {value!r}")
    return int(hour), int(minute)


def _hosts(value: str) -> list[str]:
    return [part.strip().lower() for part in value.split(",") if part.strip()]


# name -> (default, parser). Every entry is documented in the README's settings table.
SETTINGS: dict[str, tuple[Any, Callable[[str], Any]]] = {
    "DATABASE_URL": ("sqlite:///var/receiver.db", str),
    "REDIS_URL": (None, str),
    "REDIS_PREFIX": ("receiver", str),
    "VAR_DIR": ("var", str),
    "RECORDINGS_DIR": ("var/recordings", str),
    "PROVIDER_BASE_URL": ("https://portal.mobtexting.com/api/v2/", str),
    "PROVIDER_ACCESS_TOKEN": (None, str),
    "PROVIDER_TIMEZONE": ("Asia/Kolkata", str),
    "DEFAULT_COUNTRY_CODE": (DEFAULT_COUNTRY_CODE, parse_country_code),
    "PROVIDER_RATE_LIMIT": (1000, int),
    "MAX_BODY_BYTES": (1048576, int),
    "MAX_EVENTS_PER_REQUEST": (1000, int),
    "DOWNLOAD_ALLOWED_HOSTS": ([], _hosts),
    "DOWNLOAD_ALLOW_PRIVATE": (False, _bool),
    "DOWNLOAD_ALLOW_HTTP": (False, _bool),
    "DOWNLOAD_TIMEOUT": (60.0, float),
    "DOWNLOAD_CA_BUNDLE": (None, str),
    "RECORDING_URL_TTL": (7200, int),
    "RECORDING_MAX_BYTES": (209715200, int),
    "SECRET_GRACE_HOURS": (24.0, float),
    "METRICS_TOKEN": (None, str),
    "WORKER_CONCURRENCY": (16, int),
    "RECORDING_EXPIRY_MARGIN": (300.0, float),
    "RECORDING_RETRY_BASE": (10.0, float),
    "RECORDING_RETRY_MAX": (600.0, float),
    "RECORDING_MAX_ATTEMPTS": (30, int),
    "RECORDING_LEASE": (60.0, float),
    "RECORDING_SWEEP_INTERVAL": (30.0, float),
    "RECORDING_REQUEUE_AFTER": (60.0, float),
    "RECORDING_MATCH_WINDOW": (900.0, float),
    "DOWNLOAD_MAX_SECONDS": (1800.0, float),
    "PROVIDER_TIMEOUT": (30.0, float),
    "RECONCILE_AT": ((2, 30), _clock),
    "RECONCILE_CONCURRENCY": (4, int),
    "ARCHIVE_AFTER_DAYS": (None, int),
    "ARCHIVE_DIR": ("var/archive", str),
    "ARCHIVE_S3_ENDPOINT_URL": (None, str),
    "ARCHIVE_S3_RETAIN_DAYS": (2557, int),
    "ARCHIVE_S3_LOCK_MODE": ("COMPLIANCE", str),
    "STATS_ROLLUP_GRACE": (300.0, float),
    "PUBLIC_URL": (None, str),
    "LOG_LEVEL": ("INFO", str),
    "DB_POOL_SIZE": (5, int),
    "DB_CONNECT_TIMEOUT": (5.0, float),
    "DB_STATEMENT_TIMEOUT": (30.0, float),
    "DB_WAIT_TIMEOUT": (4.0, float),
    "SQLITE_SYNCHRONOUS": ("FULL", str),
    "SECRET_KEY": (None, str),
    "CONSOLE_SESSION_HOURS": (12.0, float),
    "CONSOLE_SIGNIN_RATE": ("30 per minute", str),
    "SESSION_COOKIE_SECURE": (False, _bool),
}


def normalise_database_url(url: str) -> str:
    """Accept the URLs platforms hand out and pick psycopg 3 for PostgreSQL."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _from_environment(name: str) -> Any:
    default, parse = SETTINGS[name]
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise RuntimeError(f"setting {name}: {exc}") from None


def load_setting(name: str) -> Any:
    """One setting from the environment (and `.env`), for code that runs without the app (migrations)."""
    load_dotenv(os.environ.get("RECEIVER_ENV_FILE", ".env"), override=False)
    return _from_environment(name)


def load_settings(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return defaults, overridden by the environment, overridden by `overrides`."""
    load_dotenv(os.environ.get("RECEIVER_ENV_FILE", ".env"), override=False)
    settings = {name: _from_environment(name) for name in SETTINGS}
    settings.update(overrides or {})
    settings["DEFAULT_COUNTRY_CODE"] = parse_country_code(str(settings["DEFAULT_COUNTRY_CODE"]))
    try:
        ZoneInfo(settings["PROVIDER_TIMEZONE"])
    except (ZoneInfoNotFoundError, ValueError):
        raise RuntimeError(
            f"setting PROVIDER_TIMEZONE: unknown zone {settings['PROVIDER_TIMEZONE']!r}"
        ) from None
    if settings["DOWNLOAD_CA_BUNDLE"]:
        try:
            ssl.create_default_context(cafile=settings["DOWNLOAD_CA_BUNDLE"])
        except (OSError, ssl.SSLError) as exc:
            raise RuntimeError(f"setting DOWNLOAD_CA_BUNDLE: not a readable PEM file of CAs: {exc}") from None
    settings["DATABASE_URL"] = normalise_database_url(settings["DATABASE_URL"])
    # werkzeug refuses a larger Content-Length (413); a chunked body it cuts one byte past the
    # limit, which the ingest view then refuses (413) instead of storing a truncated body.
    settings["MAX_CONTENT_LENGTH"] = settings["MAX_BODY_BYTES"] + 1
    return settings
