"""The console's segments and personas with Django's client: the builder's form saves a rule, its buttons
edit the tree, the live count and sample, bad rules answered at the node's path, warnings with suggestions,
the segment page, delete refused while used, personas with a picture and their figures, the 360° page;
viewers read and get 403 on every POST; another workspace's segment is a 404."""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

import pytest
from django.test import Client

from tsunagu.console import rule_form
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import membership_add, user_create
from tsunagu.customers.selectors import customer_list
from tsunagu.segments.models import ComputedTrait, ComputedValue, Persona, Segment
from tsunagu.segments.services import segment_create

pytestmark = pytest.mark.django_db

GOLD = {"all": [{"trait": "plan", "op": "eq", "value": "gold"}]}


def png(width: int = 2, height: int = 2) -> bytes:
    """A real PNG (red pixels), small."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def form(rule: Any, **extra: str) -> dict[str, str]:
    """The builder's fields for ``rule``, as the page draws them (``was`` included)."""
    values = rule_form.form_values(rule)
    values.update({k.replace(":kind", ":was"): v for k, v in values.items() if k.endswith(":kind")})
    return {"mode": "structured", **values, **extra}


@pytest.fixture
def shop(send: Any, hanako: Any, workspace: Any) -> Any:
    """花子 (plan gold, an order of 4980, active on web and line) and 一郎 (plan silver, web)."""
    send("/v1/identify", {"userId": "u-ichiro", "traits": {"firstName": "一郎", "plan": "silver"},
                          "timestamp": "2026-01-06T00:00:00Z"})
    return workspace


def _viewer(workspace: Any) -> Client:
    user = user_create(username="vera", password="correct-horse-battery")
    membership_add(workspace=workspace, user=user, role="viewer", actor=SYSTEM)
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(user)
    return client


def test_the_builder_saves_a_segment_and_its_page_shows_members_history_and_rule(client_en, shop):
    base = f"/w/{shop.slug}/segments"
    page = client_en.get(f"{base}/new")
    assert page.status_code == 200 and 'name="r.0:kind"' in page.content.decode()
    r = client_en.post(f"{base}/new", form(GOLD, key="gold", name="Gold members", action="save"))
    assert r.status_code == 302 and r["Location"] == f"{base}/s/gold/"
    seg = Segment.objects.get(workspace=shop, key="gold")
    assert seg.rule == GOLD and seg.member_count == 1
    html = client_en.get(r["Location"]).content.decode()
    assert "Saved: 1 members." in html
    assert '<span class="stat-value" data-testid="member-count">1</span>' in html
    hanako = customer_list(workspace=shop, user_id="u-hanako").get()
    assert f'href="/w/{shop.slug}/customers/{hanako.pk}/"' in html and "山田" in html
    assert "Trait plan equals “gold”" in html
    assert "entered" in html and "the segment was created" in html
    listing = client_en.get(f"{base}/").content.decode()
    assert 'data-key="gold"' in listing and '<td class="num" data-testid="members">1</td>' in listing

    # Edit: a second condition by the editor's button, then save: 一郎 is not gold, 花子 stays.
    r = client_en.post(f"{base}/s/gold/edit", form(GOLD, name="Gold or silver", action="add:r:trait"))
    assert r.status_code == 200 and 'name="r.1:kind"' in r.content.decode()
    any_rule = {"any": [{"trait": "plan", "op": "eq", "value": "gold"},
                        {"trait": "plan", "op": "eq", "value": "silver"}]}
    r = client_en.post(f"{base}/s/gold/edit", form(any_rule, name="Gold or silver", action="save"))
    assert r.status_code == 302
    seg.refresh_from_db()
    assert seg.rule == any_rule and seg.member_count == 2 and seg.name == "Gold or silver"


def test_the_editor_buttons_edit_the_tree_and_htmx_gets_the_editor_alone(client_en, shop):
    url = f"/w/{shop.slug}/segments/new"
    hx = {"HTTP_HX_REQUEST": "true"}
    r = client_en.post(url, form(GOLD, action="add:r:event"), **hx)
    html = r.content.decode()
    assert r.status_code == 200 and "<html" not in html
    assert 'data-path="$.all[1]" data-kind="event"' in html
    event_rule = {"all": [{"trait": "plan", "op": "eq", "value": "gold"}, {"event": "Order Completed"}]}
    html = client_en.post(url, form(event_rule, action="addwhere:r.1"), **hx).content.decode()
    assert 'name="r.1.w0:property"' in html and 'data-path="$.all[1].where[0]"' in html
    html = client_en.post(url, form(event_rule, action="remove:r.0"), **hx).content.decode()
    assert 'data-path="$.all[0]" data-kind="event"' in html and 'data-path="$.all[1]"' not in html
    # A kind select changed: the node becomes that kind (a condition made a group becomes its child).
    changed = form(event_rule)
    changed["r.0:kind"] = "any"
    html = client_en.post(url, changed, **hx).content.decode()
    assert 'data-path="$.all[0]" data-kind="any"' in html and 'data-path="$.all[0].any[0]" data-kind="trait"' in html
    # The JSON tab shows the rule the form writes; back to the builder when the builder can show it.
    html = client_en.post(url, form(event_rule, action="mode:json"), **hx).content.decode()
    assert 'name="rule_json"' in html and "&quot;Order Completed&quot;" in html
    back = client_en.post(url, {"mode": "json", "rule_json": '{"segment": "vip"}', "action": "mode:structured"}, **hx)
    assert 'data-path="$" data-kind="segment"' in back.content.decode()
    stays = client_en.post(url, {"mode": "json", "rule_json": '{"trait": "a", "op": "eq", "value": 1, "x": 1}',
                                 "action": "mode:structured"}, **hx).content.decode()
    assert 'name="rule_json"' in stays and "The builder cannot show this rule" in stays


def test_the_live_count_follows_the_rule_with_a_sample_and_warnings(client_en, shop):
    url = f"/w/{shop.slug}/segments/preview"
    html = client_en.post(url, form(GOLD)).content.decode()
    assert '<span data-testid="live-count">1</span> customer matches' in html and "花子" in html
    silver_or_gold = {"trait": "plan", "op": "in", "value": ["gold", "silver"]}
    html = client_en.post(url, form(silver_or_gold)).content.decode()
    assert '<span data-testid="live-count">2</span> customers match' in html and "一郎" in html
    html = client_en.post(url, form({"trait": "plann", "op": "exists"})).content.decode()
    assert '<span data-testid="live-count">0</span>' in html
    assert "Unknown trait “plann”. Did you mean: plan?" in html
    html = client_en.post(url, {"mode": "json", "rule_json": '{"all": [{"event": "Order Completed", '
                                                             '"count": {"op": "gte", "value": 1}}]}'}).content.decode()
    assert '<span data-testid="live-count">1</span>' in html


def test_bad_rules_are_answered_at_the_node_path(client_en, shop):
    base = f"/w/{shop.slug}/segments"
    bad = {"all": [{"trait": "plan", "op": "eq", "value": "gold"}, {"trait": "plan", "op": "bogus", "value": 1}]}
    r = client_en.post(f"{base}/new", form(bad, key="bad", name="Bad", action="save"))
    html = r.content.decode()
    assert r.status_code == 400 and not Segment.objects.filter(key="bad").exists()
    assert 'data-field="$.all[1].op"' in html
    assert 'class="rule-node has-error" id="n-r.1" data-path="$.all[1]"' in html
    assert 'id="n-r.0" data-path="$.all[0]"' in html and 'class="rule-node has-error" id="n-r.0"' not in html
    assert 'value="Bad"' in html  # the form keeps what was typed
    where_bad = {"event": "Order Completed", "where": [{"property": "revenue", "op": "gte", "value": "x"}]}
    html = client_en.post(f"{base}/preview", form(where_bad)).content.decode()
    assert 'data-field="$.where[0].value"' in html
    html = client_en.post(f"{base}/new", form(where_bad, key="w", name="W", action="save")).content.decode()
    assert '<div class="rule-where has-error" data-path="$.where[0]">' in html
    r = client_en.post(f"{base}/new", {"mode": "json", "rule_json": "{nope", "key": "j", "name": "J", "action": "save"})
    assert r.status_code == 400 and "The rule is not JSON" in r.content.decode()
    r = client_en.post(f"{base}/new", form(GOLD, key="Bad Key!", name="x", action="save"))
    assert r.status_code == 400 and 'data-field="key"' in r.content.decode()
    segment_create(workspace=shop, key="a", name="A", rule=GOLD, actor=SYSTEM)
    segment_create(workspace=shop, key="b", name="B", rule={"segment": "a"}, actor=SYSTEM)
    r = client_en.post(f"{base}/s/a/edit", form({"segment": "b"}, name="A", action="save"))
    assert r.status_code == 400 and "would refer to itself" in r.content.decode()


def test_delete_is_refused_while_another_segment_uses_it(client_en, shop):
    segment_create(workspace=shop, key="a", name="A", rule=GOLD, actor=SYSTEM)
    segment_create(workspace=shop, key="b", name="B", rule={"segment": "a"}, actor=SYSTEM)
    r = client_en.post(f"/w/{shop.slug}/segments/s/a/delete", follow=True)
    assert "Not deleted: segment “a” is used by b" in r.content.decode()
    assert Segment.objects.filter(key="a").exists()
    r = client_en.post(f"/w/{shop.slug}/segments/s/b/delete", follow=True)
    assert "Segment “B” deleted." in r.content.decode() and not Segment.objects.filter(key="b").exists()


def test_viewers_read_and_get_403_on_every_post(shop):
    segment_create(workspace=shop, key="gold", name="Gold", rule=GOLD, actor=SYSTEM)
    viewer = _viewer(shop)
    base = f"/w/{shop.slug}/segments"
    html = viewer.get(f"{base}/s/gold/edit").content.decode()
    assert 'data-testid="read-only"' in html and '<fieldset class="bare" disabled>' in html
    assert 'data-testid="save"' not in html and f'hx-post="{base}/preview"' not in html
    assert viewer.get(f"{base}/s/gold/").status_code == 200
    assert 'data-testid="delete"' not in viewer.get(f"{base}/s/gold/").content.decode()
    for url, data in ((f"{base}/new", form(GOLD, key="v", name="V", action="save")),
                      (f"{base}/s/gold/edit", form(GOLD, name="X", action="save")),
                      (f"{base}/preview", form(GOLD)),
                      (f"{base}/s/gold/delete", {}),
                      (f"{base}/personas/gold/edit", {"description": "x"})):
        assert viewer.post(url, data).status_code == 403, url
    assert viewer.get(f"{base}/personas/gold/edit").status_code == 403
    assert Segment.objects.get(key="gold").name == "Gold" and not Persona.objects.exists()


def test_another_workspaces_segments_and_personas_are_404(client_en, shop, other_workspace):
    theirs = segment_create(workspace=other_workspace, key="theirs", name="Theirs", rule=GOLD, actor=SYSTEM)[0]
    Persona.objects.create(workspace=other_workspace, segment=theirs, description="secret")
    for url in (f"/w/{shop.slug}/segments/s/theirs/", f"/w/{shop.slug}/segments/s/theirs/edit",
                f"/w/{shop.slug}/segments/personas/theirs/", f"/w/{shop.slug}/segments/personas/theirs/edit",
                f"/w/{other_workspace.slug}/segments/", f"/w/{other_workspace.slug}/segments/s/theirs/"):
        assert client_en.get(url).status_code == 404, url
    assert client_en.post(f"/w/{shop.slug}/segments/s/theirs/delete").status_code == 404
    assert Segment.objects.filter(key="theirs").exists()


def test_a_persona_with_a_picture_and_its_figures(client_ja, shop):
    segment_create(workspace=shop, key="gold", name="ゴールド会員", rule=GOLD, actor=SYSTEM)
    base = f"/w/{shop.slug}/segments/personas"
    assert client_ja.get(f"{base}/?segment=gold")["Location"] == f"{base}/gold/edit"
    picture = png()
    from django.core.files.uploadedfile import SimpleUploadedFile

    r = client_ja.post(f"{base}/gold/edit", {
        "description": "週末にまとめ買いする", "goals": "送料を抑えたい\nポイントを貯めたい\n",
        "pain_points": "配送が遅い", "preferred_channels": ["line", "email"],
        "picture": SimpleUploadedFile("me.png", picture, content_type="image/png"),
    })
    assert r.status_code == 302 and r["Location"] == f"{base}/gold/"
    persona = Persona.objects.get(segment__key="gold")
    assert persona.goals == ["送料を抑えたい", "ポイントを貯めたい"] and persona.preferred_channels == ["line", "email"]
    assert persona.picture == "data:image/png;base64," + base64.b64encode(picture).decode()
    html = client_ja.get(r["Location"]).content.decode()
    assert f'src="{persona.picture}"' in html
    assert '<span class="stat-value" data-testid="size">1</span>' in html
    assert '<span class="stat-value" data-testid="share">50.0%</span>' in html  # 花子 of two customers
    assert '<span class="stat-value" data-testid="spend">4,980</span>' in html  # her one order's revenue
    assert 'data-testid="trend-today">1</span>' in html
    assert html.count('<li title="') == 30
    top = html.split('data-testid="top-channels"')[1].split("</div>")[0]
    assert "badge ch-line" in top and "badge ch-web" in top
    cards = client_ja.get(f"{base}/").content.decode()
    assert "ゴールド会員" in cards and f'src="{persona.picture}"' in cards

    # Kept without a new file; a GIF, a file too big and a forged type are refused beside the form.
    r = client_ja.post(f"{base}/gold/edit", {"description": "変更", "goals": "", "pain_points": ""})
    persona.refresh_from_db()
    assert r.status_code == 302 and persona.description == "変更" and persona.picture.startswith("data:image/png")
    for name, content in (("a.gif", b"GIF89a" + b"\x00" * 20), ("big.png", picture + b"\x00" * (512 * 1024))):
        r = client_ja.post(f"{base}/gold/edit", {"description": "x", "picture": SimpleUploadedFile(name, content)})
        assert r.status_code == 400 and 'data-field="picture"' in r.content.decode(), name
    persona.refresh_from_db()
    assert persona.description == "変更"
    r = client_ja.post(f"{base}/gold/edit", {"description": "", "remove_picture": "1"})
    persona.refresh_from_db()
    assert r.status_code == 302 and persona.picture == ""


def test_the_360_page_shows_segments_history_and_computed_traits(client_en, shop):
    hanako = customer_list(workspace=shop, user_id="u-hanako").get()
    segment_create(workspace=shop, key="gold", name="Gold members", rule=GOLD, actor=SYSTEM)
    trait = ComputedTrait.objects.create(workspace=shop, key="orders_90d", aggregate="count", event="Order Completed")
    ComputedTrait.objects.create(workspace=shop, key="last_order_at", aggregate="last", event="Order Completed",
                                 property="timestamp")
    ComputedValue.objects.create(workspace=shop, trait=trait, customer=hanako, value=3, num=3)
    html = client_en.get(f"/w/{shop.slug}/customers/{hanako.pk}/").content.decode()
    segs = html.split('data-testid="customer-segments"')[1].split("</ul>")[0]
    assert f'href="/w/{shop.slug}/segments/s/gold/"' in segs and "Gold members" in segs
    assert "entered Gold members" in html
    computed = html.split('data-testid="computed"')[1].split("</table>")[0]
    assert '>orders_90d</th><td class="wrap">3</td>' in computed
    assert '>last_order_at</th><td class="wrap">—</td>' in computed
    ichiro = customer_list(workspace=shop, user_id="u-ichiro").get()
    html = client_en.get(f"/w/{shop.slug}/customers/{ichiro.pk}/").content.decode()
    assert "In no segment." in html and '>orders_90d</th><td class="wrap">0</td>' in html  # a count without a row is 0
    dash = client_en.get(f"/w/{shop.slug}/").content.decode()
    assert 'data-testid="dashboard-segments"' in dash and "Gold members" in dash


@pytest.mark.parametrize("value", ["gold", "5", 5, 1.5, True, None, ["a", 1], {"days_ago": 30}, "", " x ", '"q"'])
def test_values_show_as_text_and_read_back_the_same(value):
    assert rule_form.value_parse(rule_form.value_text(value)) == value


def test_every_node_kind_goes_through_the_form_unchanged():
    rule = {"all": [
        {"trait": "$email", "op": "exists"},
        {"not": {"segment": "vip"}},
        {"any": [{"consent": {"channel": "email", "topic": "marketing"}},
                 {"computed": "orders_90d", "op": "between", "value": [1, 3]}]},
        {"event": "Order Completed", "type": "page", "channel": "web",
         "where": [{"property": "revenue", "op": "gte", "value": 5000}],
         "count": {"op": "eq", "value": 0}, "within": {"between": ["2026-01-01", {"days_ago": 3}]}},
        {"event": "Cart", "within": {"days": 90}},
    ]}
    assert rule_form.representable(rule)
    assert rule_form.node_from_form(rule_form.form_values(rule)) == rule
