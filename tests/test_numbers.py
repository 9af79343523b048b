"""Phone numbers in one canonical form (receiver/numbers.py) and the DEFAULT_COUNTRY_CODE setting."""

from __future__ import annotations

import pytest

from receiver.config import load_settings
from receiver.numbers import canonical, parse_country_code


@pytest.mark.parametrize(
    "spelling",
    [
        "+91 98450-12345",
        "+919845012345",
        "00919845012345",
        "0091 98450 12345",
        "919845012345",
        9845012345,
        "9845012345",
        "09845012345",
        "(098450) 12345",
        " 98450.12345 ",
    ],
)
def test_every_spelling_of_a_number_has_one_canonical_form(spelling):
    assert canonical(spelling) == "919845012345"


@pytest.mark.parametrize(
    ("spelling", "in_44"),
    [
        ("९८४५० १२३४५", "449845012345"),  # Devanagari digits, as an Indian phone keyboard types them
        ("٩٨٤٥٠١٢٣٤٥", "449845012345"),  # Arabic-Indic
        ("＋９１ ９８４５０ １２３４５", "919845012345"),  # fullwidth, from an East Asian input method
        ("\u200e+91 98450 12345\u200f", "919845012345"),  # direction marks, copied from contacts
    ],
)
def test_digits_of_any_script_and_invisible_marks_read_as_the_number(spelling, in_44):
    assert canonical(spelling) == "919845012345"
    assert canonical(spelling, "44") == in_44


def test_the_country_code_goes_to_national_numbers_only():
    assert canonical("7911 123456", "44") == "447911123456"
    assert canonical("07911 123456", "44") == "447911123456"
    assert canonical("+44 7911 123456", "91") == "447911123456"
    assert canonical("919845012345", "44") == "919845012345"  # 12 digits: it has its country code


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("918921269xxx", "918921269xxx"),  # the provider's masked example: matched as received
        ("700969ca-0cb2-11ec-a2cxxxx", "700969ca-0cb2-11ec-a2cxxxx"),  # an RCS agent id
        (" demo@gmail.com ", "demo@gmail.com"),
        ("1234567890123456", "1234567890123456"),  # more digits than E.164 allows: not a number
        ("+", "+"),
        ("00", "00"),
    ],
)
def test_what_is_not_a_phone_number_is_matched_as_received(value, expected):
    assert canonical(value) == expected


def test_country_code_setting(monkeypatch):
    assert load_settings()["DEFAULT_COUNTRY_CODE"] == "91"
    monkeypatch.setenv("DEFAULT_COUNTRY_CODE", "+44")
    assert load_settings()["DEFAULT_COUNTRY_CODE"] == "44"
    assert load_settings({"DEFAULT_COUNTRY_CODE": "1"})["DEFAULT_COUNTRY_CODE"] == "1"
    monkeypatch.setenv("DEFAULT_COUNTRY_CODE", "091")
    with pytest.raises(RuntimeError, match="DEFAULT_COUNTRY_CODE"):
        load_settings()
    assert parse_country_code("＋４４") == parse_country_code("٤٤") == "44"
    for bad in ("", "abc", "1234", "0"):
        with pytest.raises(ValueError):
            parse_country_code(bad)
