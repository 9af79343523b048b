"""The compiled loaders answer exactly as `schema.load` does: the same data, the same errors.

Every provider example of the suite (tests/payloads.py), every one of them with each field
dropped, emptied, nulled or given a value of another type, and random objects made of the
schemas' own field names, through every schema.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from receiver.ingest import payloads as ingest_payloads
from receiver.ingest.loading import CompiledLoader
from receiver.ingest.payloads import URL_KINDS, recognise

from . import payloads

LOADERS: dict[str, CompiledLoader] = ingest_payloads._LOADERS


def examples() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for name in dir(payloads):
        value = getattr(payloads, name)
        if name.isupper() and isinstance(value, dict):
            found.append(value)
    found.append(payloads.sms())
    found.append(payloads.sms(status="UNDELIV", id="x:1", mobile=None))
    for channel in ("whatsapp", "rcs", "viber"):
        found.append(payloads.channel_status(channel, "read", "wamid.1", "1701086585"))
    return found


ODD_VALUES: list[Any] = [
    None,
    "",
    " ",
    0,
    -1,
    1.5,
    True,
    [],
    {},
    [1],
    {"a": 1},
    "x" * 5000,
    "2021-13-45",
    "NaN",
]


def variants(example: dict[str, Any]) -> list[dict[str, Any]]:
    """The example, and the object each event of it carries, with each field changed."""
    objects = [example]
    inner = example.get("payload")
    if isinstance(inner, dict):
        objects.append(inner)
    out: list[dict[str, Any]] = []
    for obj in objects:
        out.append(obj)
        for key in obj:
            out.append({k: v for k, v in obj.items() if k != key})
            out.extend({**obj, key: odd} for odd in ODD_VALUES)
    return out


def answer(load: Any, data: Any) -> tuple[str, Any]:
    try:
        return "loaded", load(data)
    except ValidationError as exc:
        return "invalid", exc.messages


def assert_same(data: Any) -> None:
    for kind, loader in LOADERS.items():
        assert answer(loader.load, data) == answer(loader.schema.load, data), (kind, data)


def test_every_schema_is_compiled():
    assert all(loader.compiled for loader in LOADERS.values())


@pytest.mark.parametrize("example", examples(), ids=lambda e: str(e.get("event") or e.get("id") or "")[:40])
def test_the_suite_s_payloads_load_the_same(example):
    for data in variants(example):
        assert_same(data)
        for url_kind in (None, *URL_KINDS):
            kind, _, fields, _ = recognise(data, url_kind)
            if kind is not None:
                assert_same(fields)


def test_a_valid_payload_takes_the_compiled_path():
    """Not the fallback: the compiled steps themselves give marshmallow's answer."""
    loader = LOADERS["sms-status"]
    data = payloads.sms()
    assert loader._load(data) == loader.schema.load(data)


FIELD_NAMES = sorted(
    {f.data_key or name for loader in LOADERS.values() for name, f in loader.schema.load_fields.items()}
    | {
        "message_id",
        "mobile_number",
        "to",
        "from",
        "message",
        "recipient",
        "channels",
        "recording",
        "identity",
    }
)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(FIELD_NAMES), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELD_NAMES), VALUES, max_size=10))
def test_random_objects_load_the_same(data):
    assert_same(data)
