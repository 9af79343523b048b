"""Admin pages: users, sources and API keys (admins only). A new secret or key is shown once, in
the answer to the POST that made it, and never kept in the session."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import sources
from ..db import get_session
from ..models import ApiScope, Role
from ..users import service as users
from . import admin, cursors
from .auth import requires
from .blueprint import bp


def _list(kind: str, **extra: Any) -> Any:
    try:
        page = admin.page_by_name(get_session(), admin.LISTS[kind], request.args.get("cursor"))
    except cursors.BadCursor:
        abort(400, description="That page link is broken; open the list again.")
    return render_template(f"console/admin_{kind}.html", page=page, kind=kind, **extra)


@bp.get("/admin/users")
@requires(Role.admin)
def users_page() -> Any:
    return _list("users", roles=list(Role))


@bp.post("/admin/users")
@requires(Role.admin)
def users_add() -> Any:
    form = request.form
    try:
        users.add_user(
            get_session(),
            form.get("name", "")[:64],
            form.get("password", "")[:1024],
            Role(form.get("role", "viewer")),
        )
    except (users.UserError, ValueError) as exc:
        flash(f"User not added: {exc}")
    else:
        flash(f"User {form.get('name')} added.")
    return redirect(url_for("console.users_page"))


@bp.post("/admin/users/<name>/role")
@requires(Role.admin)
def users_role(name: str) -> Any:
    try:
        users.set_role(get_session(), name, Role(request.form.get("role", "")))
    except (users.UserError, ValueError) as exc:
        flash(f"Role not changed: {exc}")
    else:
        flash(f"{name} is now {request.form.get('role')}.")
    return redirect(url_for("console.users_page"))


@bp.post("/admin/users/<name>/password")
@requires(Role.admin)
def users_password(name: str) -> Any:
    try:
        users.set_password(get_session(), name, request.form.get("password", "")[:1024])
    except users.UserError as exc:
        flash(f"Password not changed: {exc}")
    else:
        flash(f"{name}'s password changed; their sessions ended.")
    return redirect(
        url_for("console.users_page") if name != current_user.name else url_for("console.sign_in")
    )


@bp.post("/admin/users/<name>/remove")
@requires(Role.admin)
def users_remove(name: str) -> Any:
    if name == current_user.name:
        flash("You cannot remove yourself.")
        return redirect(url_for("console.users_page"))
    try:
        users.remove_user(get_session(), name)
    except users.UserError as exc:
        flash(str(exc))
    else:
        flash(f"User {name} removed.")
    return redirect(url_for("console.users_page"))


@bp.get("/admin/sources")
@requires(Role.admin)
def sources_page() -> Any:
    return _list("sources")


def _callback_url(name: str) -> str:
    return sources.callback_url(name, current_app.config.get("PUBLIC_URL"), request.host_url)


@bp.post("/admin/sources")
@requires(Role.admin)
def sources_add() -> Any:
    name = request.form.get("name", "").strip()[:64]
    try:
        creds = sources.add_source(get_session(), name)
    except sources.SourceError as exc:
        flash(f"Source not added: {exc}")
        return redirect(url_for("console.sources_page"))
    return _list(
        "sources",
        shown={
            "what": f"Source {name}: callback URL {_callback_url(name)}; its secret",
            "secret": creds.secret,
        },
    )


@bp.post("/admin/sources/<name>/rotate")
@requires(Role.admin)
def sources_rotate(name: str) -> Any:
    hours = current_app.config["SECRET_GRACE_HOURS"]
    try:
        creds = sources.rotate_source(get_session(), name, grace=sources.grace_period(hours))
    except sources.SourceError as exc:
        flash(str(exc))
        return redirect(url_for("console.sources_page"))
    return _list(
        "sources",
        shown={
            "what": f"Source {name}: new secret (the old one works {hours:g} more hours)",
            "secret": creds.secret,
        },
    )


@bp.post("/admin/sources/<name>/remove")
@requires(Role.admin)
def sources_remove(name: str) -> Any:
    try:
        sources.remove_source(get_session(), name)
    except sources.SourceError as exc:
        flash(str(exc))
    else:
        flash(f"Source {name} removed; what it delivered is kept.")
    return redirect(url_for("console.sources_page"))


@bp.get("/admin/apikeys")
@requires(Role.admin)
def apikeys_page() -> Any:
    return _list("apikeys", scopes=list(ApiScope))


@bp.post("/admin/apikeys")
@requires(Role.admin)
def apikeys_create() -> Any:
    name = request.form.get("name", "").strip()[:64]
    try:
        key = sources.create_api_key(get_session(), name, ApiScope(request.form.get("scope", "read")))
    except (sources.SourceError, ValueError) as exc:
        flash(f"API key not created: {exc}")
        return redirect(url_for("console.apikeys_page"))
    return _list("apikeys", scopes=list(ApiScope), shown={"what": f"API key {name}", "secret": key})


@bp.post("/admin/apikeys/<name>/revoke")
@requires(Role.admin)
def apikeys_revoke(name: str) -> Any:
    try:
        sources.revoke_api_key(get_session(), name)
    except sources.SourceError as exc:
        flash(str(exc))
    else:
        flash(f"API key {name} revoked.")
    return redirect(url_for("console.apikeys_page"))
