"""The console for support staff: server-rendered pages under /console.

Sign-in and roles (receiver.users), search, a number's timeline, messages, calls with their
recordings, raw events and their replay, the delivery dashboard and the health page. Every asset
is served from this package; pages read without JavaScript.
"""

from __future__ import annotations

from flask import Flask

from . import auth
from .blueprint import bp


def init_app(app: Flask) -> None:
    """Register the console's blueprint, its sessions, sign-in, CSRF and rate limit."""
    from . import (  # noqa: F401 (their routes)
        views_admin,
        views_auth,
        views_dashboard,
        views_events,
        views_pages,
        views_search,
        views_status,
    )

    auth.init_app(app)
    app.register_blueprint(bp)
