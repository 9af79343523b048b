"""Phone numbers in one canonical form: digits only, with the country code.

The platform sends numbers with their country code and no `+` (`918921269000`), as JSON numbers
or strings; people searching type them every way (`+91 98450-12345`, `00919845012345`, the national
`9845012345` or `09845012345`). Every stored number is kept as received and, beside it, in the form
`canonical` gives; every number filter puts what it is given through the same function, so all
those spellings find the same rows.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

DEFAULT_COUNTRY_CODE = "91"
# A number of at most this many digits, written without `+` or `00`, is national: it gets the
# default country code. National significant numbers are at most 10 digits in India (and in most
# of the world); a number with its country code is longer.
NATIONAL_MAX_DIGITS = 10
# E.164: no phone number has more digits than this, country code included.
E164_MAX_DIGITS = 15

# Digits with the punctuation people write numbers with; nothing else (no letters).
_PHONE = re.compile(r"\+?[\d\s().\-/]*\d[\d\s().\-/]*")
_NOT_DIGIT = re.compile(r"\D")
_COUNTRY_CODE = re.compile(r"[1-9]\d{0,2}")


def _plain(text: str) -> str:
    """`text` as it reads: fullwidth forms (`＋９１`) as their ASCII twins, every decimal digit of
    any script (Devanagari `९`, Arabic-Indic `٩`) as its ASCII digit, and no invisible format
    characters (the direction marks a number copied from a phone's contacts often carries)."""
    if text.isascii():
        return text
    return "".join(
        str(unicodedata.decimal(char)) if char.isdecimal() else char
        for char in unicodedata.normalize("NFKC", text)
        if unicodedata.category(char) != "Cf"
    )


def parse_country_code(value: str) -> str:
    """A country code setting (`91`, `+91`, `1`); ValueError for anything else."""
    code = _plain(value).strip().removeprefix("+")
    if not _COUNTRY_CODE.fullmatch(code):
        raise ValueError(f"not a country code (1 to 3 digits, e.g. 91): {value!r}")
    return code


def is_number(value: Any) -> bool:
    """Whether a value is written as a phone number: digits (at most E.164's 15, after any `+` or
    `00`) and the punctuation people write numbers with, no letters."""
    return value is not None and _number(str(value).strip(), DEFAULT_COUNTRY_CODE) is not None


def canonical(value: Any, country_code: str = DEFAULT_COUNTRY_CODE) -> str | None:
    """The form a number is matched in; None for no value.

    - `+` then digits, or `00` then digits: the digits after it (the country code is there);
    - a leading single `0` (the trunk prefix), or at most 10 digits: national, so the country
      code goes in front;
    - more digits: taken to hold their country code already.

    A value that is not a phone number (letters, as in an RCS agent id or a masked `91892xxx`,
    or more digits than E.164 allows) is matched as received, less surrounding spaces.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    number = _number(text, country_code)
    return text if number is None else number


def _number(text: str, country_code: str) -> str | None:
    """The canonical digits of a written phone number, or None if `text` is not one."""
    text = _plain(text).strip()
    if not _PHONE.fullmatch(text):
        return None
    digits = _NOT_DIGIT.sub("", text)
    if text.startswith("+"):
        number = digits
    elif digits.startswith("00"):
        number = digits[2:]
    elif digits.startswith("0"):
        number = country_code + digits[1:]
    elif len(digits) <= NATIONAL_MAX_DIGITS:
        number = country_code + digits
    else:
        number = digits
    if not number or len(number) > E164_MAX_DIGITS:
        return None
    return number
