"""What the server sends to protect the console: a Host allow-list (loopback by default), a
Content-Security-Policy that admits only the site's own files, `Cache-Control: private, no-store` on
whatever is only for its reader, and — behind a TLS proxy, when configured — Secure cookies and HSTS."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import membership_add, user_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(workspace: Any, settings: Any) -> Client:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = user_create(username="keiko", password="a long passphrase 1")
    membership_add(workspace=workspace, user=user, role="owner", actor=SYSTEM)
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(user)
    return client


def _directives(header: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def test_console_pages_carry_a_same_origin_content_security_policy(logged_in: Client, workspace: Any) -> None:
    for path in ("/login/", f"/w/{workspace.slug}/"):
        response = (Client() if path == "/login/" else logged_in).get(path)
        assert response.status_code == 200, path
        policy = _directives(response["Content-Security-Policy"])
        assert policy["default-src"] == ["'self'"]
        assert policy["script-src"] == ["'self'"], "no inline or third-party script"
        assert policy["style-src"] == ["'self'"]
        assert policy["object-src"] == ["'none'"]
        assert policy["frame-ancestors"] == ["'none'"]


def test_the_console_base_page_has_no_inline_script_or_style(logged_in: Client, workspace: Any) -> None:
    """What the policy would block: every <script> has a same-origin src, no <style> element."""
    html = logged_in.get(f"/w/{workspace.slug}/").content.decode()
    scripts = re.findall(r"<script\b([^>]*)>", html)
    assert scripts, "the console loads its script"
    for attributes in scripts:
        src = re.search(r'src="([^"]+)"', attributes)
        assert src is not None and src.group(1).startswith("/static/"), attributes
    assert "<style" not in html


def test_authenticated_pages_and_api_answers_are_private_no_store(
    logged_in: Client, workspace: Any, token: str
) -> None:
    page = logged_in.get(f"/w/{workspace.slug}/")
    assert page.status_code == 200
    assert {"private", "no-store"} <= _cache_control(page["Cache-Control"])
    answer = Client().get("/api/v1/customers", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert {"private", "no-store"} <= _cache_control(answer["Cache-Control"])
    refused = Client().get("/api/v1/customers")
    assert refused.status_code == 401
    assert {"private", "no-store"} <= _cache_control(refused["Cache-Control"])


def test_static_files_stay_cacheable(logged_in: Client) -> None:
    asset = logged_in.get("/static/console/console.js")
    assert asset.status_code == 200
    assert "no-store" not in asset.get("Cache-Control", "")


def _cache_control(header: str) -> set[str]:
    return {part.strip() for part in header.split(",")}


@pytest.mark.live
def test_a_foreign_host_header_is_refused_by_default(live_server_factory: Any) -> None:
    server = live_server_factory("hosts")
    server.start(workers=1)
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}"):
        assert requests.get(f"{server.url}/login/", headers={"Host": host}, timeout=10).status_code == 200
    evil = requests.get(f"{server.url}/login/", headers={"Host": "evil.example"}, timeout=10)
    assert evil.status_code == 400
    assert "evil.example" not in evil.text


@pytest.mark.live
def test_behind_a_tls_proxy_cookies_are_secure_and_hsts_is_sent(live_server_factory: Any) -> None:
    server = live_server_factory("proxy")
    server.env.update(
        {
            # 127.0.0.1 for the probes (LiveServer waits on /readyz), as a load balancer's health check needs.
            "TSUNAGU_ALLOWED_HOSTS": "cx.example.com,127.0.0.1",
            "TSUNAGU_SECURE_COOKIES": "true",
            "TSUNAGU_PROXY_SSL_HEADER": "X-Forwarded-Proto",
            "TSUNAGU_HSTS_SECONDS": "31536000",
        }
    )
    server.start(workers=1)
    headers = {"Host": "cx.example.com", "X-Forwarded-Proto": "https"}
    page = requests.get(f"{server.url}/login/", headers=headers, timeout=10)
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
    cookie = page.headers["Set-Cookie"]
    assert cookie.startswith("csrftoken=") and "Secure" in [p.strip() for p in cookie.split(";")]
    # The same server reached over plain HTTP (no proxy header) sends no HSTS; Django redirects nothing.
    plain = requests.get(f"{server.url}/login/", headers={"Host": "cx.example.com"}, timeout=10)
    assert plain.status_code == 200
    assert "Strict-Transport-Security" not in plain.headers
    # And loopback names are no longer allowed once the operator names the hosts.
    other = requests.get(f"{server.url}/login/", headers={"Host": f"localhost:{server.port}"}, timeout=10)
    assert other.status_code == 400
