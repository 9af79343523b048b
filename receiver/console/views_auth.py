"""Sign-in and sign-out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from ..db import get_session
from ..users import service
from .auth import PREFIX, ConsoleUser, sign_in_limit
from .blueprint import bp

REFUSED = (
    "Wrong name or password, or too many failed sign-ins for this name"
    " (after 10 in 15 minutes, wait 15 minutes)."
)


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console page of this site, never another site, nor an
    address with control characters (a line break cannot go into the Location header)."""
    if (
        target
        and target.startswith(PREFIX + "/")
        and not target.startswith("//")
        and "\\" not in target
        and target.isprintable()
    ):
        return target
    return url_for("console.home")


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    """Show the sign-in form; check a name and password (rate-limited per address, locked per user)."""
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(_safe_next(request.args.get("next")))
        return render_template("console/sign_in.html", next=request.args.get("next", ""))
    sign_in_limit().hit(request.remote_addr or "unknown")
    lifetime = timedelta(hours=current_app.config["CONSOLE_SESSION_HOURS"])
    try:
        signed = service.sign_in(
            get_session(),
            request.form.get("name", "")[:64],
            request.form.get("password", "")[:1024],
            lifetime,
        )
    except service.SignInRefused as exc:
        # One message whether the user is locked or the name unknown: a different one for a locked
        # user would tell an attacker which names exist.
        current_app.logger.info("console sign-in refused (%s)", "locked" if exc.locked else "wrong")
        return render_template("console/sign_in.html", next=request.form.get("next", ""), error=REFUSED), 401
    session.clear()  # a new session on sign-in: nothing from before carries over
    login_user(ConsoleUser(signed), duration=lifetime)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/sign-out")
def sign_out() -> Any:
    """End the session on the server and forget the cookie."""
    service.sign_out(get_session(), current_user.get_id())
    logout_user()
    session.clear()
    flash("Signed out.")
    return redirect(url_for("console.sign_in"))
