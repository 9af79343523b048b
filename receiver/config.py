"""Settings: defaults, overridden by the environment (and a `.env` file), overridden by the caller.

`Settings` declares every setting once, with its type and default; adding a setting is adding a
field (and its line in the README's table). The app keeps them in `app.config` under the same
names, which is where code reads them; `settings_of` gives a typed view of an app's config.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .numbers import DEFAULT_COUNTRY_CODE, parse_country_code


class Settings(BaseSettings):
    """Every setting, named as its environment variable; each is documented in the README's table."""

    model_config = SettingsConfigDict(
        case_sensitive=True,
        env_ignore_empty=True,  # a variable set to nothing keeps the default
        extra="ignore",  # a `.env` may hold what other programs read (gunicorn's BIND, WEB_*)
        validate_default=True,
    )

    DATABASE_URL: str = "sqlite:///var/receiver.db"
    REDIS_URL: str | None = None
    REDIS_PREFIX: str = "receiver"
    VAR_DIR: str = "var"
    RECORDINGS_DIR: str = "var/recordings"
    PROVIDER_BASE_URL: str = "https://portal.mobtexting.com/api/v2/"
    PROVIDER_ACCESS_TOKEN: str | None = None
    PROVIDER_TIMEZONE: str = "Asia/Kolkata"
    DEFAULT_COUNTRY_CODE: str = DEFAULT_COUNTRY_CODE
    PROVIDER_RATE_LIMIT: int = 1000
    RECONCILE_AT: str = "02:30"
    MAX_BODY_BYTES: int = 1048576
    MAX_EVENTS_PER_REQUEST: int = 1000
    DOWNLOAD_ALLOWED_HOSTS: Annotated[list[str], NoDecode] = []
    DOWNLOAD_ALLOW_PRIVATE: bool = False
    DOWNLOAD_ALLOW_HTTP: bool = False
    DOWNLOAD_TIMEOUT: float = 60.0
    DOWNLOAD_CA_BUNDLE: str | None = None
    RECORDING_URL_TTL: int = 7200
    RECORDING_MAX_BYTES: int = 209715200
    SECRET_GRACE_HOURS: float = 24.0
    SECRET_KEY: str | None = None
    CONSOLE_SESSION_HOURS: float = 12.0
    CONSOLE_SIGNIN_RATE: str = "30 per minute"
    SESSION_COOKIE_SECURE: bool = False
    TRUSTED_PROXIES: int = Field(default=0, ge=0, le=10)
    METRICS_TOKEN: str | None = None
    WORKER_CONCURRENCY: int = 16
    RECORDING_EXPIRY_MARGIN: float = 300.0
    RECORDING_RETRY_BASE: float = 10.0
    RECORDING_RETRY_MAX: float = 600.0
    RECORDING_MAX_ATTEMPTS: int = 30
    RECORDING_LEASE: float = 60.0
    RECORDING_SWEEP_INTERVAL: float = 30.0
    RECORDING_REQUEUE_AFTER: float = 60.0
    RECORDING_MATCH_WINDOW: float = 900.0
    DOWNLOAD_MAX_SECONDS: float = 1800.0
    PROVIDER_TIMEOUT: float = 30.0
    RECONCILE_CONCURRENCY: int = 8
    ARCHIVE_AFTER_DAYS: int | None = None
    ARCHIVE_DIR: str = "var/archive"
    ARCHIVE_S3_ENDPOINT_URL: str | None = None
    ARCHIVE_S3_RETAIN_DAYS: int = 2557
    ARCHIVE_S3_LOCK_MODE: str = "COMPLIANCE"
    STATS_ROLLUP_GRACE: float = 300.0
    PUBLIC_URL: str | None = None
    LOG_LEVEL: str = "INFO"
    DB_POOL_SIZE: int = 5
    DB_CONNECT_TIMEOUT: float = 5.0
    DB_STATEMENT_TIMEOUT: float = 30.0
    DB_WAIT_TIMEOUT: float = 4.0
    SOURCE_CACHE_SECONDS: float = 2.0
    SQLITE_SYNCHRONOUS: str = "FULL"
    FORWARD_TIMEOUT: float = 10.0
    FORWARD_LEASE: float = 60.0
    FORWARD_RETRY_BASE: float = 2.0
    FORWARD_RETRY_MAX: float = 3600.0
    FORWARD_RETRY_FOR: float = 259200.0
    FORWARD_RATE_LIMIT: float = 50.0
    FORWARD_CONCURRENCY: int = 8
    FORWARD_RETAIN_DAYS: float = 14.0
    FORWARD_POLL_INTERVAL: float = 0.2

    @field_validator("DATABASE_URL")
    @classmethod
    def _psycopg(cls, url: str) -> str:
        return normalise_database_url(url)

    @field_validator("VAR_DIR", "RECORDINGS_DIR", "ARCHIVE_DIR", mode="before")
    @classmethod
    def _folder(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("PROVIDER_TIMEZONE")
    @classmethod
    def _zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown zone {name!r}") from None
        return name

    @field_validator("DEFAULT_COUNTRY_CODE", mode="before")
    @classmethod
    def _country_code(cls, value: Any) -> str:
        return parse_country_code(str(value))

    @field_validator("RECONCILE_AT")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError(f"not a time of day as HH:MM (UTC): {value!r}")
        return value

    @field_validator("DOWNLOAD_ALLOWED_HOSTS", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @field_validator("DOWNLOAD_CA_BUNDLE")
    @classmethod
    def _ca_bundle(cls, path: str | None) -> str | None:
        if path:
            try:
                ssl.create_default_context(cafile=path)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"not a readable PEM file of CAs: {exc}") from None
        return path


# Every setting's name (tests leave them out of a child process's environment).
SETTINGS = frozenset(Settings.model_fields)


def normalise_database_url(url: str) -> str:
    """Accept the URLs platforms hand out and pick psycopg 3 for PostgreSQL."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _env_file() -> str:
    return os.environ.get("RECEIVER_ENV_FILE", ".env")


def _read(overrides: Mapping[str, Any]) -> Settings:
    """Validate the settings, naming the first bad one in a RuntimeError."""
    try:
        return Settings(_env_file=_env_file(), **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "?"
        cause = error.get("ctx", {}).get("error")
        raise RuntimeError(f"setting {name}: {cause if cause is not None else error['msg']}") from None


def load_setting(name: str) -> Any:
    """One setting from the environment (and `.env`), for code that runs without the app (migrations)."""
    return getattr(_read({}), name)


def load_settings(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return defaults, overridden by the environment, overridden by `overrides`, as `app.config`
    holds them: every setting, and what else the caller gave (Flask's own keys, TESTING)."""
    overrides = dict(overrides or {})
    settings = _read({name: value for name, value in overrides.items() if name in SETTINGS})
    config = {**overrides, **settings.model_dump()}
    # werkzeug refuses a larger Content-Length (413); a chunked body it cuts one byte past the
    # limit, which the ingest view then refuses (413) instead of storing a truncated body.
    config["MAX_CONTENT_LENGTH"] = config["MAX_BODY_BYTES"] + 1
    return config


def settings_of(config: Mapping[str, Any]) -> Settings:
    """A typed view of an app's config (as it is now: tests change it after the app is built)."""
    return Settings.model_construct(**{name: config[name] for name in SETTINGS})
