"""Normalisation of identities and text, the same everywhere: ingestion, search and the API filters.

Email: NFKC, trimmed, lower-cased. Phone: E.164 with Japan (+81) as the default region. Text for matching:
NFKC (folds full-width letters and half-width kana), lower case, katakana folded to hiragana, no spaces —
so 「ヤマダ」, 「ﾔﾏﾀﾞ」 and 「やまだ」 all match.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

import jaconv
import phonenumbers

# Values that SDKs and forms send when they have nothing: joining profiles on them would merge strangers.
BLOCKED_VALUES = frozenset(
    {
        "",
        "anonymous",
        "anon",
        "null",
        "undefined",
        "none",
        "nil",
        "nan",
        "unknown",
        "n/a",
        "na",
        "-",
        "test",
        "[object object]",
        "0",
        "-1",
        "true",
        "false",
    }
)
_ALL_ZEROS = re.compile(r"^[0\-\s.:]+$")
_SPACES = re.compile(r"\s+")


def is_placeholder(value: str) -> bool:
    """True for placeholder values (empty, "anonymous", "null", all zeros…) that must never join profiles.

    The one rule for what identifies nobody: identity resolution drops these (``normalize_*``) and the
    tracking API refuses an event that has nothing else (``tsunagu.events.validation``). NFKC first, so a
    full-width 「ｎｕｌｌ」 is a placeholder as well."""
    folded = nfkc(value).lower()
    return folded in BLOCKED_VALUES or bool(_ALL_ZEROS.match(folded))


def nfkc(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip()


def normalize_id(value: object) -> str | None:
    """userId / anonymousId / external ids: strings or numbers, NFKC, trimmed; None when blocked."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        value = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if not isinstance(value, str):
        return None
    return _cached(_normalize_id_text, value)


# The normalisers are pure functions of a string, and the applier asks the same ones again and again (a
# customer's anonymousId and userId in each of their events): cached, they cost a dict lookup. Bounded in
# entries and in the length of what is cached, so memory stays small whatever the traffic sends.
_CACHE_SIZE = 1 << 16
_CACHED_LENGTH = 320


def _cached(normalize: Any, value: str, *args: str) -> str | None:
    if len(value) > _CACHED_LENGTH:
        return normalize.__wrapped__(value, *args)
    return normalize(value, *args)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _normalize_id_text(value: str) -> str | None:
    text = nfkc(value)
    if is_placeholder(text) or len(text) > 255:
        return None
    return text


def normalize_email(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return _cached(_normalize_email_text, value)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _normalize_email_text(value: str) -> str | None:
    text = nfkc(value).lower()
    # No placeholder holds an "@", so the local part is the one to check.
    if "@" not in text or len(text) > 254 or " " in text:
        return None
    local, _, domain = text.rpartition("@")
    if not local or "." not in domain or is_placeholder(local):
        return None
    return text


def normalize_phone(value: object, region: str = "JP") -> str | None:
    """A phone number in E.164 (``+819012345678``), or None if it cannot be a phone number."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    return _cached(_normalize_phone_text, value, region)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _normalize_phone_text(value: str, region: str) -> str | None:
    text = nfkc(value)
    if is_placeholder(text) or len(text) > 40:
        return None
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def phone_national(e164: str, region: str = "JP") -> str:
    """A stored E.164 number as people in ``region`` write it (``+819012345678`` → ``090-1234-5678``); a
    number of another country keeps its country code (``+1 415-555-0123``). Empty if it does not parse."""
    if not e164:
        return ""
    try:
        parsed = phonenumbers.parse(e164, region)
    except phonenumbers.NumberParseException:
        return ""
    if phonenumbers.region_code_for_number(parsed) == region:
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def fold_text(value: str) -> str:
    """Text folded for matching: NFKC, lower case, katakana to hiragana, no whitespace."""
    text = unicodedata.normalize("NFKC", value).lower()
    text = jaconv.kata2hira(text)
    return _SPACES.sub("", text)
