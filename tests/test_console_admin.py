"""The console's admin pages: users, sources and API keys, for admins only."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from receiver.models import ApiKey, Role, Source, User
from tests.console_story import csrf_of, sign_in, user


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def admin(app, client):
    user(app, "ada", Role.admin)
    assert sign_in(client, "ada").status_code == 302
    return client


def names(app, model) -> set[str]:
    with app.extensions["receiver.db"].new_session() as session:
        return set(session.scalars(sa.select(model.name)))


def test_an_operator_may_not_open_or_post_to_the_admin_pages(app, client):
    user(app, "otto", Role.operator)
    sign_in(client, "otto")
    token = csrf_of(text(client.get("/console/")))
    assert client.get("/console/admin/users").status_code == 403
    assert (
        client.post("/console/admin/sources", data={"csrf_token": token, "name": "evil"}).status_code == 403
    )
    assert "evil" not in names(app, Source)


def test_an_admin_adds_a_source_and_sees_its_secret_once(app, admin):
    token = csrf_of(text(admin.get("/console/admin/sources")))
    page = text(admin.post("/console/admin/sources", data={"csrf_token": token, "name": "portal"}))
    secret = re.search(r'<code class="wrap" id="secret">([^<]+)</code>', page).group(1)
    assert "portal" in names(app, Source)
    assert secret not in text(admin.get("/console/admin/sources"))  # once
    response = admin.application.test_client().post(
        "/hooks/portal", json={"id": "x"}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code != 401  # the secret works


def test_an_admin_creates_and_revokes_an_api_key(app, admin):
    token = csrf_of(text(admin.get("/console/admin/apikeys")))
    page = text(
        admin.post("/console/admin/apikeys", data={"csrf_token": token, "name": "crm", "scope": "operate"})
    )
    key = re.search(r'id="secret">([^<]+)<', page).group(1)
    assert (
        admin.application.test_client()
        .get("/api/v1/messages", headers={"Authorization": f"Bearer {key}"})
        .status_code
        == 200
    )
    admin.post("/console/admin/apikeys/crm/revoke", data={"csrf_token": token})
    assert (
        admin.application.test_client()
        .get("/api/v1/messages", headers={"Authorization": f"Bearer {key}"})
        .status_code
        == 401
    )
    with app.extensions["receiver.db"].new_session() as session:
        assert session.scalars(sa.select(ApiKey.revoked_at)).one() is not None


def test_an_admin_manages_users(app, admin):
    token = csrf_of(text(admin.get("/console/admin/users")))
    admin.post(
        "/console/admin/users",
        data={"csrf_token": token, "name": "bo", "role": "viewer", "password": "a long password"},
    )
    assert "bo" in names(app, User)
    admin.post("/console/admin/users/bo/role", data={"csrf_token": token, "role": "operator"})
    with app.extensions["receiver.db"].new_session() as session:
        assert session.scalars(sa.select(User.role).where(User.name == "bo")).one() == Role.operator
    admin.post("/console/admin/users/bo/remove", data={"csrf_token": token})
    assert "bo" not in names(app, User)
    admin.post("/console/admin/users/ada/remove", data={"csrf_token": token})
    assert "ada" in names(app, User)  # not oneself
