"""Phones as people read them, beside the E.164 the profile stores."""

from __future__ import annotations

from typing import Any

from django import template

from tsunagu.customers.normalize import phone_national

register = template.Library()


@register.filter(is_safe=False)
def national(value: Any) -> str:
    """``+819012345678`` → ``090-1234-5678``; empty when there is nothing better to show than the value."""
    if not isinstance(value, str):
        return ""
    text = phone_national(value)
    return "" if text == value else text
