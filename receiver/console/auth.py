"""Signing in to the console: sessions, the sign-in rate limit, roles and CSRF.

- The cookie is Flask's signed session cookie, scoped to /console, HttpOnly, SameSite=Lax, and
  Secure whenever the request came over https. It carries a random session token; the session
  itself is a row in the database (receiver.users), so signing out ends it on the server.
- Flask-Login tells who is signed in; its user id is that session token.
- Every POST carries a `csrf_token` field (Flask-WTF), checked before the view runs: 400 without it.
- Sign-in attempts are limited per address by the `limits` library, in Redis when REDIS_URL is
  set, else in the database; the lock per user after repeated failures is the users service's.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Request, abort, current_app, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_login import LoginManager, UserMixin, current_user
from flask_wtf.csrf import CSRFProtect
from limits import parse
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from ..db import get_session
from ..models import Role
from ..users import service
from .limits_storage import SCHEME
from .secret_key import ensure_secret_key

PREFIX = "/console"
login_manager = LoginManager()
csrf = CSRFProtect()
F = TypeVar("F", bound=Callable[..., Any])


class ConsoleUser(UserMixin):  # type: ignore[misc]
    """The signed-in person of a request; Flask-Login's id is the session token."""

    def __init__(self, signed: service.SignedIn) -> None:
        self.signed = signed
        self.name = signed.name
        self.role = signed.role

    def get_id(self) -> str:
        return self.signed.token

    def may(self, role: Role | str) -> bool:
        return self.role.may(role)


@login_manager.user_loader
def _load_user(token: str) -> ConsoleUser | None:
    session = get_session()
    signed = service.signed_in(session, token)
    session.rollback()
    return ConsoleUser(signed) if signed is not None else None


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's cookie session, opened for console pages only, signed with a key made on first
    use, and Secure over https. The webhooks and the API have no use for it: theirs is Flask's
    null session, empty, which Flask never saves (no `Vary: Cookie` on their answers, and no
    work for it on each webhook) and which refuses to be written to."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.path.startswith(PREFIX):
            return self.make_null_session(app)
        ensure_secret_key(app)
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def requires(role: Role) -> Callable[[F], F]:
    """Refuse (403) a view to anyone whose role is below `role`."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated or not current_user.may(role):
                abort(403, description=f"this needs the role {role} or above")
            return view(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate


class SignInLimit:
    """At most CONSOLE_SIGNIN_RATE sign-in attempts per address, counted across every process."""

    def __init__(self, app: Flask) -> None:
        config = app.config
        if config.get("REDIS_URL"):
            storage = storage_from_string(config["REDIS_URL"], key_prefix=f"{config['REDIS_PREFIX']}:limits")
        else:
            storage = storage_from_string(f"{SCHEME}://", engine=app.extensions["receiver.db"].engine)
        assert isinstance(storage, Storage)  # not one of limits' asyncio storages
        self.storage = storage
        try:
            self.rate = parse(config["CONSOLE_SIGNIN_RATE"])
        except ValueError:
            given = config["CONSOLE_SIGNIN_RATE"]
            raise RuntimeError(
                f"setting CONSOLE_SIGNIN_RATE: not a rate such as '30 per minute': {given!r}"
            ) from None
        self.limiter = FixedWindowRateLimiter(storage)

    def hit(self, address: str) -> None:
        """Count one attempt from `address`; 429 past the limit."""
        if not self.limiter.hit(self.rate, "console-sign-in", address):
            reset = self.limiter.get_window_stats(self.rate, "console-sign-in", address).reset_time
            raise TooManyRequests(
                description="too many sign-in attempts from this address; wait a minute",
                retry_after=max(1, int(reset - time.time()) + 1),
            )


def sign_in_limit() -> SignInLimit:
    limit: SignInLimit = current_app.extensions["receiver.console.limit"]
    return limit


def init_app(app: Flask) -> None:
    """Sessions, sign-in, CSRF on console forms, and the sign-in rate limit."""
    app.session_interface = ConsoleSessionInterface()
    app.config["SESSION_COOKIE_NAME"] = "receiver_console"
    app.config["SESSION_COOKIE_PATH"] = PREFIX
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    # Checked by the console's own blueprint only: webhooks and the API authenticate otherwise.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # valid as long as the session
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "console.sign_in"
    login_manager.login_message = "Sign in to see that page."
    login_manager.session_protection = "basic"
    app.extensions["receiver.console.limit"] = SignInLimit(app)
