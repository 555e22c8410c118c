"""Assertions shared by the tests of error answers: every 4xx names the field at fault."""

from __future__ import annotations

from typing import Any


def fields_named(body: Any) -> set[str]:
    """Every field an error answer names: its ``field``, and those of ``errors`` and ``rejected``."""
    if not isinstance(body, dict):
        return set()
    names = {body["field"]} if isinstance(body.get("field"), str) else set()
    for err in body.get("errors") or []:
        names.add(err["field"])
    for rej in body.get("rejected") or []:
        names.update(err["field"] for err in rej["errors"])
    for err in body.get("details") or []:
        names.add(err["field"])
    return names


def assert_names(status: int, body: Any, expected_status: int, field: str) -> None:
    assert status == expected_status, body
    assert isinstance(body, dict), body
    assert body.get("message"), body
    assert field in fields_named(body), body
