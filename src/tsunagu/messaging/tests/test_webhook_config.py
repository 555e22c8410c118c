"""Webhook channel config (URL, a signing secret generated when none is given) and the payload's JSON."""

from __future__ import annotations

import base64
import re

import pytest
from standardwebhooks import Webhook

from tsunagu.core.errors import ValidationError
from tsunagu.messaging.channels import channel_class
from tsunagu.messaging.channels.webhook import Channel, secret_generate


def test_the_registry_finds_the_webhook_channel() -> None:
    assert channel_class("webhook") is Channel
    assert Channel.secret_fields == ("secret",)


def test_a_secret_is_generated_when_none_is_given() -> None:
    cleaned = Channel.clean_config({"url": "https://hooks.example.com/in"})
    secret = cleaned["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[len("whsec_") :])) == 32
    Webhook(secret)  # the SDK reads it
    assert Channel.clean_config({"url": "https://hooks.example.com/in"})["secret"] != secret


def test_a_given_secret_is_kept() -> None:
    secret = secret_generate()
    assert Channel.clean_config({"url": "https://hooks.example.com/in", "secret": f" {secret} "})["secret"] == secret
    unprefixed = base64.b64encode(b"k" * 24).decode()
    assert Channel.clean_config({"url": "https://h.example/x", "secret": unprefixed})["secret"] == unprefixed


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("whsec_not base64!", "must be whsec_ followed by base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 random bytes (this one has 5)"),
        (42, "must be a string"),
    ],
)
def test_a_bad_secret_is_refused(secret: object, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)) as refused:
        Channel.clean_config({"url": "https://hooks.example.com/in", "secret": secret})
    assert refused.value.field == "config.secret"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "is required"),
        ("ftp://hooks.example.com/in", "must be an http:// or https:// URL"),
        ("hooks.example.com/in", "must be an http:// or https:// URL"),
        ("https://user:pw@hooks.example.com/in", "must not contain a user name or password"),
        ("https://hooks.example.com:99999/in", "is not a valid URL"),
        (["https://a.example"], "must be a string"),
    ],
)
def test_a_bad_url_is_refused(url: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as refused:
        Channel.clean_config({"url": url})
    assert refused.value.field == "config.url"


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        Channel.clean_config({"url": "https://hooks.example.com/in", "method": "PUT"})
    assert refused.value.field == "config.method"


def test_the_rendered_payload_is_parsed_and_kept_compact() -> None:
    finished = Channel.finish({"payload": '{\n  "event": "order.shipped",\n  "name": "山田 太郎",\n  "n": [1, 2]\n}'})
    assert finished == {
        "payload": {"event": "order.shipped", "name": "山田 太郎", "n": [1, 2]},
        "text": '{"event":"order.shipped","name":"山田 太郎","n":[1,2]}',
    }
    assert Channel.summary(finished) == ("", finished["text"])


def test_a_payload_that_is_not_json_after_rendering_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^payload is not valid JSON after rendering: Expecting ',' delimiter"):
        Channel.finish({"payload": '{"name": "a" "b"}'})
    with pytest.raises(ValueError, match=r"^payload is not valid JSON after rendering"):
        Channel.finish({})
