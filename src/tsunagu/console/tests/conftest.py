"""Console fixtures: members of workspaces, logged-in clients, customers sent through the tracking API."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import membership_add, user_create
from tsunagu.customers.selectors import customer_list

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # PBKDF2's deliberate slowness would dominate these tests; the hasher is not what they test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def member(workspace: Any) -> Any:
    """A user who belongs to ``workspace`` (Shop A) only."""
    user = user_create(username="alice", password=PASSWORD)
    membership_add(workspace=workspace, user=user, role="owner", actor=SYSTEM)
    return user


@pytest.fixture
def client_en(member: Any) -> Client:
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(member)
    return client


@pytest.fixture
def client_ja(member: Any) -> Client:
    client = Client(headers={"Accept-Language": "ja"})
    client.force_login(member)
    return client


@pytest.fixture
def hanako(send: Any, workspace: Any) -> Any:
    """山田花子 with katakana furigana, an email, a phone and events on two channels."""
    send(
        "/v1/identify",
        {
            "userId": "u-hanako",
            "traits": {
                "lastName": "山田",
                "firstName": "花子",
                "lastNameKana": "ヤマダ",
                "firstNameKana": "ハナコ",
                "email": "hanako@example.jp",
                "phone": "090-1234-5678",
                "plan": "gold",
            },
            "timestamp": "2026-01-05T00:00:00Z",
        },
    )
    send(
        "/v1/track",
        {
            "userId": "u-hanako",
            "event": "Order Completed",
            "properties": {"revenue": 4980, "currency": "JPY"},
            "timestamp": "2026-01-05T01:00:00Z",
        },
    )
    send(
        "/v1/track",
        {
            "userId": "u-hanako",
            "event": "Message Read",
            "properties": {"read": True, "campaign": None, "tags": ["sale", "new"], "meta": {"x": 1}, "extra": 1},
            "timestamp": "2026-01-05T02:00:00Z",
            "context": {"channel": "line"},
        },
    )
    send("/v1/page", {"userId": "u-hanako", "name": "Cart", "timestamp": "2026-01-04T20:00:00Z"})
    return customer_list(workspace=workspace, user_id="u-hanako").get()
