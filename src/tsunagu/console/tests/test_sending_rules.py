"""The messaging settings page (sending rules): quiet hours per topic with delay or drop, Japanese holidays,
frequency caps and the time zone are saved through ``workspace_settings_update`` — audited, only what
changed —, bad values are refused beside their field, and only admins and owners may change them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from tsunagu.core.models import AuditEntry, Workspace
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import membership_add, user_create

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db

PATH = "/w/shop-a/messaging/settings/"


@pytest.fixture(autouse=True)
def new_workspace_rules(workspace: Any) -> None:
    """The rules a new workspace starts with: marketing quiet from 21:00 to 08:00, no caps, no holidays."""
    from tsunagu.core.models import default_quiet_hours

    workspace.quiet_hours = default_quiet_hours()
    workspace.save(update_fields=["quiet_hours"])


def form(**changes: str) -> dict[str, str]:
    """The page's form as shown for the defaults (marketing quiet 21:00–08:00, no caps), with ``changes``."""
    body = {"timezone": "Asia/Tokyo", "holidays": "", "qh-marketing-on": "1", "qh-marketing-start": "21:00",
            "qh-marketing-end": "08:00", "qh-marketing-action": "delay", "qh-service-start": "21:00",
            "qh-service-end": "08:00", "qh-service-action": "delay", "cap_count": "1", "cap0-topic": "marketing",
            "cap0-channel": "", "cap0-max": "", "cap0-per": "day"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def test_the_page_shows_the_defaults(client_ja: Any) -> None:
    page = client_ja.get(PATH).content.decode()
    assert 'name="qh-marketing-on" value="1" checked' in page
    assert 'name="qh-service-on" value="1">' in page
    assert 'id="qh-marketing-start" name="qh-marketing-start" value="21:00"' in page
    assert 'value="Asia/Tokyo"' in page and "配信ルール" in page and "配信を控える時間帯" in page


def test_rules_are_saved_and_audited(client_en: Any, workspace: Any) -> None:
    answer = client_en.post(PATH, form(**{
        "timezone": "Asia/Seoul", "holidays": "jp", "qh-marketing-start": "20:30", "qh-marketing-action": "drop",
        "qh-service-on": "1", "qh-service-start": "22:00", "qh-service-end": "07:00",
        "cap_count": "3", "cap0-max": "2", "cap1-topic": "marketing", "cap1-max": "", "cap2-topic": "marketing",
        "cap2-channel": "sms", "cap2-max": "5", "cap2-per": "week",
    }))
    assert answer.status_code == 302 and answer["Location"] == PATH
    ws = Workspace.objects.get(pk=workspace.pk)
    assert ws.timezone == "Asia/Seoul" and ws.holidays == "jp"
    assert ws.quiet_hours == {"marketing": {"start": "20:30", "end": "08:00", "action": "drop"},
                              "service": {"start": "22:00", "end": "07:00"}}
    # The blank row in the middle is no cap: the second cap is frequency_caps[1].
    assert ws.frequency_caps == [{"topic": "marketing", "max": 2, "per": "day"},
                                 {"topic": "marketing", "channel": "sms", "max": 5, "per": "week"}]
    entry = AuditEntry.objects.filter(action="workspace.settings_changed").get()
    assert entry.actor == "user alice"
    assert sorted(entry.data["after"]) == ["frequency_caps", "holidays", "quiet_hours", "timezone"]
    page = client_en.get(PATH).content.decode()
    assert "Settings saved." in page
    assert re.search(r'<select id="cap1-channel".*?<option value="sms" selected>', page, re.S)
    assert re.search(r'<select id="qh-marketing-action".*?<option value="drop" selected>', page, re.S)

    # Saving the page unchanged writes nothing more to the audit log.
    again = form(**{"timezone": "Asia/Seoul", "holidays": "jp", "qh-marketing-start": "20:30",
                    "qh-marketing-action": "drop", "qh-service-on": "1", "qh-service-start": "22:00",
                    "qh-service-end": "07:00", "cap_count": "2", "cap0-max": "2", "cap1-topic": "marketing",
                    "cap1-channel": "sms", "cap1-max": "5", "cap1-per": "week"})
    assert client_en.post(PATH, again).status_code == 302
    assert AuditEntry.objects.filter(action="workspace.settings_changed").count() == 1


def test_unticking_quiet_hours_removes_them(client_en: Any, workspace: Any) -> None:
    assert client_en.post(PATH, form(**{"qh-marketing-on": None})).status_code == 302
    assert Workspace.objects.get(pk=workspace.pk).quiet_hours == {}


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"timezone": "Mars/Olympus"}, "timezone", "must be an IANA time zone such as &#x27;Asia/Tokyo&#x27;"),
    ({"qh-marketing-end": "21:00"}, "qh-marketing-end", "must differ from start (an empty window)"),
    ({"qh-marketing-start": "25:00"}, "qh-marketing-start", "must be a time of day as HH:MM (00:00–23:59)"),
    ({"cap0-max": "-1"}, "cap0-max", "Enter a whole number."),
    ({"cap0-max": "20000"}, "cap0-max", "must be a whole number from 0 to 10000"),
    ({"cap0-max": "3", "cap0-per": "year"}, "cap0-per",
     "must be &#x27;day&#x27;, &#x27;week&#x27; or &#x27;month&#x27;"),
])
def test_a_bad_value_is_refused_beside_its_field(client_en: Any, workspace: Any, changes: dict[str, str],
                                                 field: str, message: str) -> None:
    answer = client_en.post(PATH, form(**changes))
    assert answer.status_code == 400
    assert f'data-field="{field}">{message}</p>' in answer.content.decode()
    ws = Workspace.objects.get(pk=workspace.pk)
    assert ws.timezone == "Asia/Tokyo" and ws.frequency_caps == []
    assert not AuditEntry.objects.filter(action="workspace.settings_changed").exists()


def test_only_admins_and_owners_change_the_rules(workspace: Any) -> None:
    user = user_create(username="sora", password=PASSWORD)
    membership_add(workspace=workspace, user=user, role="operator", actor=SYSTEM)
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(user)
    page = client.get(PATH).content.decode()
    assert "Only admins and owners may change these settings." in page
    assert '<fieldset class="bare" disabled>' in page and 'data-testid="save-settings"' not in page
    assert client.post(PATH, form(timezone="UTC")).status_code == 403
    assert Workspace.objects.get(pk=workspace.pk).timezone == "Asia/Tokyo"
