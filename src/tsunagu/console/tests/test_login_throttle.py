"""Sign-in is throttled per user name and per address, on the console and on /admin/: after the limit even the
right password is refused with a clear message (ja/en) until the lock expires."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.test import Client

from tsunagu.core.services import user_create

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"
LIMIT = settings.AXES_FAILURE_LIMIT


@pytest.fixture
def users(db: Any) -> None:
    user_create(username="hanako", password=PASSWORD)
    user_create(username="taro", password=PASSWORD)
    user_create(username="root", password=PASSWORD, is_superuser=True)


def client(address: str, language: str = "en") -> Client:
    return Client(REMOTE_ADDR=address, headers={"Accept-Language": language})


def sign_in(c: Client, username: str, password: str, path: str = "/login/") -> Any:
    return c.post(path, {"username": username, "password": password})


def signed_in(c: Client) -> bool:
    return "_auth_user_id" in c.session


def fail(c: Client, username: str, times: int = LIMIT, path: str = "/login/") -> None:
    """``times`` wrong passwords: the form again for each, until the one that reaches the limit locks."""
    for attempt in range(1, times + 1):
        expected = 429 if attempt == LIMIT else 200
        assert sign_in(c, username, "wrong-password", path).status_code == expected, attempt


def test_after_the_limit_even_the_right_password_is_refused_with_a_message(users):
    assert LIMIT <= 10
    attacker = client("203.0.113.5")
    fail(attacker, "hanako")
    response = sign_in(attacker, "hanako", PASSWORD)
    assert response.status_code == 429
    assert "Too many failed sign-in attempts" in response.content.decode()
    assert not signed_in(attacker)


def test_the_message_is_japanese_in_the_japanese_console(users):
    attacker = client("203.0.113.5", language="ja")
    fail(attacker, "hanako")
    response = sign_in(attacker, "hanako", PASSWORD)
    assert response.status_code == 429
    assert "ログインの失敗が多すぎます" in response.content.decode()


def test_one_fewer_failure_than_the_limit_still_signs_in(users):
    c = client("203.0.113.5")
    fail(c, "hanako", LIMIT - 1)
    assert sign_in(c, "hanako", PASSWORD).status_code == 302
    assert signed_in(c)


def test_the_lock_is_per_user_name_and_per_address(users):
    fail(client("203.0.113.5"), "hanako")
    # The same user name from another address: locked (a guess spread over many addresses).
    assert sign_in(client("198.51.100.7"), "hanako", PASSWORD).status_code == 429
    # Another user name from the same address: locked (one client guessing many accounts).
    assert sign_in(client("203.0.113.5"), "taro", PASSWORD).status_code == 429
    # Another user name from another address: unaffected.
    other = client("198.51.100.7")
    assert sign_in(other, "taro", PASSWORD).status_code == 302
    assert signed_in(other)


def test_the_lock_expires(users):
    start = dt.datetime.now(tz=dt.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        fail(client("203.0.113.5"), "hanako")
        assert sign_in(client("203.0.113.5"), "hanako", PASSWORD).status_code == 429
        traveller.shift(settings.AXES_COOLOFF_TIME - dt.timedelta(minutes=1))
        assert sign_in(client("203.0.113.5"), "hanako", PASSWORD).status_code == 429
        traveller.shift(settings.AXES_COOLOFF_TIME + dt.timedelta(minutes=1))
        c = client("203.0.113.5")
        assert sign_in(c, "hanako", PASSWORD).status_code == 302
        assert signed_in(c)


def test_the_admin_login_is_throttled_too(users):
    c = client("203.0.113.9")
    fail(c, "root", path="/admin/login/")
    response = sign_in(c, "root", PASSWORD, "/admin/login/")
    assert response.status_code == 429
    assert "Too many failed sign-in attempts" in response.content.decode()
    assert not signed_in(c)
