"""``createuser`` (through ``user_create``) applies Django's password validators, user-name validator and e-mail
validator, each refusal one line with the validator's message and exit 2; ``--role`` without ``--workspace``
is refused, not silently dropped."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tsunagu.cli import main
from tsunagu.core.errors import ValidationError
from tsunagu.core.services import user_create

pytestmark = pytest.mark.django_db

REFUSED = [
    (["hanako", "--password", "password"], "This password is too common."),
    (["hanako", "--password", "12345678"], "This password is entirely numeric."),
    (["hanako", "--password", "abc"], "This password is too short. It must contain at least 8 characters."),
    (["hanako san", "--password", "correct-horse-battery"], "Enter a valid username."),
    (["hana/ko", "--password", "correct-horse-battery"], "Enter a valid username."),
    (["x" * 151, "--password", "correct-horse-battery"], "Ensure this value has at most 150 characters"),
    (["hanako", "--password", "correct-horse-battery", "--email", "not-an-address"], "Enter a valid email"),
    (["hanako", "--password", "correct-horse-battery", "--email", "a@b@example.com"], "Enter a valid email"),
    (["hanako", "--password", "correct-horse-battery", "--role", "admin"], "--role needs --workspace"),
]


@pytest.mark.parametrize(("args", "message"), REFUSED, ids=[" ".join(a)[:40] for a, _ in REFUSED])
def test_refused_with_the_validators_message_on_one_line(args, message, capsys, monkeypatch):
    monkeypatch.delenv("TSUNAGU_PASSWORD", raising=False)
    assert main(["createuser", *args]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tsunagu createuser: error: ")
    assert message in lines[0]
    assert not get_user_model().objects.exists()


def test_valid_input_creates_the_user(capsys):
    assert main(["createuser", "hanako.s@shop", "--password", "correct-horse-battery", "--email", "h@example.jp"]) == 0
    user = get_user_model().objects.get(username="hanako.s@shop")
    assert user.email == "h@example.jp" and user.check_password("correct-horse-battery")


def test_the_service_itself_validates_once_for_every_caller(db):
    from django.utils import translation

    with translation.override("en"), pytest.raises(ValidationError) as refused:
        user_create(username="taro", password="qwerty123")
    assert refused.value.field == "password"
    assert refused.value.message == "This password is too common."
