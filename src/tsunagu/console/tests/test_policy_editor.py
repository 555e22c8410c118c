"""The channel-policy part of the communication editor: a LINE → SMS → email policy with a wait is saved
through the services; a wait the channel cannot report and an amount that is not a number are refused
beside their field; the section offers per step only the waits its channel reports; no steps is the
variants' order."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tsunagu.core.permissions import SYSTEM
from tsunagu.messaging.models import Communication
from tsunagu.messaging.services import communication_create

pytestmark = pytest.mark.django_db

A = "/w/shop-a/messaging"
VARIANTS = [
    {"channel": "line", "locale": "ja", "text": "LINE: 発送しました"},
    {"channel": "sms", "locale": "ja", "text": "SMS: 発送しました"},
    {"channel": "email", "locale": "ja", "subject": "発送のお知らせ", "html": "<p>発送しました</p>"},
]


@pytest.fixture
def shipped(workspace: Any) -> Any:
    comm, _ = communication_create(workspace=workspace, key="shipped", name="発送", topic="transactional",
                                   variants=VARIANTS, actor=SYSTEM)
    return comm


def form(steps: list[tuple[str, str, str, str]], late: str = "ignore") -> dict[str, str]:
    """The editor's POST with the three variants and ``steps`` as (channel, wait, amount, unit) rows."""
    body = {"key": "shipped", "name": "発送", "topic": "transactional", "variant_count": "3", "action": "save",
            "policy_count": str(len(steps)), "late_success": late}
    for i, v in enumerate(VARIANTS):
        body.update({f"v{i}-{k}": val for k, val in v.items()})
    for i, (channel, wait, amount, unit) in enumerate(steps):
        body.update({f"p{i}-channel": channel, f"p{i}-wait": wait, f"p{i}-amount": amount, f"p{i}-unit": unit})
    return body


def test_a_line_sms_email_policy_with_a_wait_is_saved(client_en: Any, shipped: Any) -> None:
    steps = [("line", "", "", "minutes"), ("", "", "", "minutes"), ("sms", "delivered", "10", "minutes"),
             ("email", "read", "2", "hours")]
    answer = client_en.post(f"{A}/c/shipped/", form(steps, late="cancel"))
    assert answer.status_code == 302, answer.content.decode()[:2000]
    shipped.refresh_from_db()
    assert shipped.policy == {
        "steps": [{"channel": "line"}, {"channel": "sms", "wait": {"delivered": 600}},
                  {"channel": "email", "wait": {"read": 7200}}],
        "late_success": "cancel",
    }
    # Shown again as it was entered: the largest unit that divides the seconds.
    page = client_en.get(f"{A}/c/shipped/").content.decode()
    assert re.search(r'<select id="p0-channel".*?<option value="line" selected>', page, re.S)
    assert 'id="p1-amount" name="p1-amount" value="10"' in page
    assert re.search(r'<select id="p1-unit".*?<option value="minutes" selected>', page, re.S)
    assert 'id="p2-amount" name="p2-amount" value="2"' in page
    assert re.search(r'<select id="f-late".*?<option value="cancel" selected>', page, re.S)


def test_no_steps_goes_back_to_the_variants_order(client_en: Any, shipped: Any) -> None:
    Communication.objects.filter(pk=shipped.pk).update(policy={"steps": [{"channel": "sms"}], "late_success": "ignore"})
    assert client_en.post(f"{A}/c/shipped/", form([("", "", "", "minutes")])).status_code == 302
    shipped.refresh_from_db()
    assert shipped.policy is None
    page = client_en.get(f"{A}/c/shipped/").content.decode()
    assert "With no steps: LINE → SMS → Email." in page


def test_a_wait_the_channel_does_not_report_is_refused_beside_the_field(client_en: Any, shipped: Any) -> None:
    steps = [("line", "", "", "minutes"), ("email", "delivered", "5", "minutes")]
    answer = client_en.post(f"{A}/c/shipped/", form(steps))
    assert answer.status_code == 400
    page = answer.content.decode()
    error = re.search(r'<p class="field-error" role="alert" data-field="policy\.steps\[1\]\.wait">([^<]+)</p>', page)
    assert error is not None, page
    assert error.group(1) == "email does not report delivery (it can wait for read)"
    # The refused choice is still shown, so the operator sees what was refused.
    assert re.search(r'<select id="p1-wait".*?<option value="delivered" selected>', page, re.S)
    shipped.refresh_from_db()
    assert shipped.policy is None and shipped.current_version == 1


def test_an_amount_that_is_not_a_whole_number_is_refused(client_ja: Any, shipped: Any) -> None:
    answer = client_ja.post(f"{A}/c/shipped/", form([("sms", "delivered", "1.5", "minutes")]))
    assert answer.status_code == 400
    page = answer.content.decode()
    assert 'data-field="policy.steps[0].wait">1 以上の整数を入力してください。</p>' in page


def test_a_channel_twice_is_refused_on_its_step(client_en: Any, shipped: Any) -> None:
    answer = client_en.post(f"{A}/c/shipped/", form([("sms", "", "", "minutes"), ("sms", "", "", "minutes")]))
    assert answer.status_code == 400
    assert 'data-field="policy.steps[1]">sms is already an earlier step</p>' in answer.content.decode()


def test_each_step_offers_only_the_waits_its_channel_reports(client_en: Any, shipped: Any) -> None:
    def section(channel: str) -> str:
        body = form([(channel, "", "", "minutes")])
        return client_en.post(f"{A}/policy", body).content.decode()

    line = section("line")
    assert 'id="p0-wait"' not in line and 'data-testid="no-reports-0"' in line
    sms = section("sms")
    assert re.findall(r'<select id="p0-wait".*?</select>', sms, re.S)[0].count("<option") == 3  # sent, delivered, read
    email = section("email")
    waits = re.findall(r'<select id="p0-wait".*?</select>', email, re.S)[0]
    assert 'value="read"' in waits and 'value="delivered"' not in waits
    # A blank row to add the next step, offering the variants' channels.
    assert re.search(r'<select id="p1-channel".*?value="line".*?value="sms".*?value="email"', email, re.S)


def test_a_new_communication_is_created_with_its_policy(client_en: Any, workspace: Any) -> None:
    body = form([("email", "read", "1", "hours"), ("sms", "", "", "minutes")])
    body["key"] = "welcome"
    answer = client_en.post(f"{A}/new", body)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    comm = Communication.objects.get(workspace=workspace, key="welcome")
    assert comm.policy == {"steps": [{"channel": "email", "wait": {"read": 3600}}, {"channel": "sms"}],
                           "late_success": "ignore"}
