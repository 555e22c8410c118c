"""The identity normalisers' cache: bounded, and invisible in what they answer."""

from __future__ import annotations

from tsunagu.customers.normalize import normalize_email, normalize_id


def test_long_values_are_normalised_alike_but_not_kept_in_the_cache():
    from tsunagu.customers import normalize

    normalize._normalize_email_text.cache_clear()
    long_local = "ｙａｍａｄａ" + "a" * 400
    assert normalize_email(f"{long_local}@example.jp") is None  # over 254 characters: not an address
    assert normalize_id("Ｕ" + "1" * 300) is None  # over 255
    assert normalize_id("ｕ" + "1" * 250) == "u" + "1" * 250
    assert normalize._normalize_email_text.cache_info().currsize == 0
    assert normalize._normalize_id_text.cache_info().currsize >= 1  # the short one was cached
    # A value seen twice gives the same answer from the cache.
    first = normalize_email("ＨＡＮＡＫＯ@Example.jp")
    assert first == normalize_email("ＨＡＮＡＫＯ@Example.jp") == "hanako@example.jp"
