"""Japanese by default from the browser's Accept-Language, English on request, and a switcher that overrides
the browser per user."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

LOCALE = Path(__file__).resolve().parents[2] / "locale" / "ja" / "LC_MESSAGES"


def lang_and_nav(client, url="/w/shop-a/"):
    body = client.get(url).content.decode()
    return re.search(r'<html lang="([a-z-]+)"', body).group(1), body


def test_japanese_from_accept_language(client_ja, hanako):
    lang, body = lang_and_nav(client_ja)
    assert lang == "ja"
    assert "ダッシュボード" in body and "本日のイベント" in body
    assert "Dashboard" not in body
    lang, body = lang_and_nav(client_ja, f"/w/shop-a/customers/{hanako.pk}/")
    assert "タイムライン" in body and "識別子" in body and "フリガナ" in body
    assert "Timeline" not in body


def test_english_from_accept_language(client_en, hanako):
    lang, body = lang_and_nav(client_en)
    assert lang == "en"
    assert "Dashboard" in body and "Events today" in body
    assert "ダッシュボード" not in body
    _, body = lang_and_nav(client_en, f"/w/shop-a/customers/{hanako.pk}/")
    assert "Timeline" in body and "Identities" in body


def test_japanese_when_the_browser_sends_nothing(member):
    client = Client()
    client.force_login(member)
    lang, body = lang_and_nav(client)
    assert lang == "ja" and "ダッシュボード" in body


def test_channel_labels_are_translated(client_ja, client_en, source):
    assert ">ウェブ<" in client_ja.get("/w/shop-a/sources/").content.decode()
    assert ">Web<" in client_en.get("/w/shop-a/sources/").content.decode()


def test_switcher_overrides_the_browser_language(client_ja):
    body = client_ja.get("/w/shop-a/customers/").content.decode()
    assert 'action="/i18n/setlang/"' in body
    assert re.search(r'name="language" value="en"', body)
    response = client_ja.post("/i18n/setlang/", {"language": "en", "next": "/w/shop-a/customers/"})
    assert response.status_code == 302
    assert response["Location"] == "/w/shop-a/customers/"
    # Still sending Accept-Language: ja, the user's choice wins.
    lang, body = lang_and_nav(client_ja, "/w/shop-a/customers/")
    assert lang == "en" and "Search customers" in body
    assert 'value="en" lang="en" aria-pressed="true"' in body
    client_ja.post("/i18n/setlang/", {"language": "ja", "next": "/w/shop-a/"})
    lang, body = lang_and_nav(client_ja)
    assert lang == "ja" and "ダッシュボード" in body


def test_switcher_works_on_the_login_page():
    client = Client(headers={"Accept-Language": "ja"})
    assert "ログイン" in client.get("/login/").content.decode()
    client.post("/i18n/setlang/", {"language": "en", "next": "/login/"})
    body = client.get("/login/").content.decode()
    assert "Sign in to tsunagu" in body and "ログイン" not in body


def test_switcher_refuses_a_foreign_next_url(client_ja):
    response = client_ja.post("/i18n/setlang/", {"language": "en", "next": "https://evil.example/"})
    assert response.status_code == 302
    assert not response["Location"].startswith("https://evil.example")


def po_entries():
    """(msgid, msgstr) pairs of the .po (plural entries: the singular and msgstr[0])."""
    po = (LOCALE / "django.po").read_text(encoding="utf-8")
    entries = []
    for block in po.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            m = re.match(r'^(msgid|msgid_plural|msgstr(?:\[0\])?) "(.*)"$', line)
            if m:
                key = m.group(1).replace("[0]", "")
                fields[key] = m.group(2)
            elif line.startswith('"') and key:
                fields[key] += line[1:-1]
        if fields.get("msgid"):
            unescape = lambda v: v.replace('\\"', '"').replace("\\n", "\n")  # noqa: E731
            entries.append((unescape(fields["msgid"]), unescape(fields.get("msgstr", ""))))
    return entries


def test_translation_catalogue_is_complete_and_compiled():
    """Every msgid has a Japanese msgstr, none is fuzzy, and the compiled .mo carries the same translations."""
    import gettext

    po = (LOCALE / "django.po").read_text(encoding="utf-8")
    assert "#, fuzzy" not in po
    entries = po_entries()
    assert len(entries) > 50
    assert [msgid for msgid, msgstr in entries if not msgstr] == []
    with (LOCALE / "django.mo").open("rb") as fh:
        mo = gettext.GNUTranslations(fh)
    stale = [msgid for msgid, msgstr in entries if mo.gettext(msgid) != msgstr and mo.ngettext(msgid, "", 1) != msgstr]
    assert stale == [], "django.mo is out of date: run django-admin compilemessages"


def test_every_console_template_string_is_in_the_catalogue():
    """A {% translate %} added to a template without a Japanese entry would show English to Japanese users."""
    templates = Path(__file__).resolve().parents[1] / "templates"
    catalogue = {msgid for msgid, _ in po_entries()}
    missing = []
    for path in templates.rglob("*.html"):
        for m in re.finditer(r"""\{% translate ["'](.+?)["'] %\}""", path.read_text(encoding="utf-8")):
            if m.group(1) not in catalogue:
                missing.append((path.name, m.group(1)))
    assert missing == []
