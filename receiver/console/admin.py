"""Read side of the admin pages: users, sources and API keys, a page at a time by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from ..models import ApiKey, Source, User
from . import cursors


@dataclass
class NamedPage:
    rows: list[Any]
    next_cursor: str | None


def page_by_name(session: orm.Session, model: Any, cursor: str | None, limit: int = 50) -> NamedPage:
    """Rows of `model` (users, sources or API keys) ordered by name then id, after the cursor."""
    statement = sa.select(model).order_by(model.name, model.id)
    if cursor:
        name, last_id = cursors.decode(cursor, [str, int])
        statement = statement.where(sa.tuple_(model.name, model.id) > sa.tuple_(name, last_id))
    rows = list(session.scalars(statement.limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = cursors.encode([rows[-1].name, rows[-1].id])
    return NamedPage(rows, next_cursor)


LISTS = {"users": User, "sources": Source, "apikeys": ApiKey}
