"""Personas: the picture is checked by its bytes and size, a save is audited without the picture's bytes, a
viewer may not save, and the figures — share, average spend, top channels, the 30 days' trend worked back
from the membership history."""

from __future__ import annotations

import base64
import datetime as dt
import zoneinfo

import pytest

from tsunagu.core.errors import PermissionDenied, ValidationError
from tsunagu.core.models import AuditEntry
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import membership_add, user_create
from tsunagu.customers.models import Customer
from tsunagu.events.models import Event
from tsunagu.segments.models import Membership, MembershipChange, Segment
from tsunagu.segments.personas import persona_save, picture_check, picture_from_upload
from tsunagu.segments.selectors_personas import persona_stats, persona_trend

pytestmark = pytest.mark.django_db
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 40
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 40
TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")


def url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@pytest.mark.parametrize(("mime", "data"), [("image/png", PNG), ("image/jpeg", JPEG), ("image/webp", WEBP)])
def test_a_picture_of_each_type_is_kept(mime, data):
    assert picture_check(url(mime, data)) == url(mime, data)
    assert picture_from_upload(data) == url(mime, data)


@pytest.mark.parametrize(("picture", "says"), [
    (url("image/png", JPEG), "not a PNG image"),  # the type claimed is not the bytes'
    (url("image/gif", b"GIF89a"), "a data: URL"),
    ("https://example.com/a.png", "a data: URL"),
    ("data:image/png;base64,!!!!", "a data: URL"),
    ("data:image/png;base64,iVBORw0KGgo=A", "not valid base64"),
    (url("image/png", PNG + b"\x00" * (512 * 1024)), "at most 512 KB"),
])
def test_a_bad_picture_is_refused_naming_the_field(picture, says):
    with pytest.raises(ValidationError) as exc:
        picture_check(picture)
    assert exc.value.field == "picture" and says in exc.value.message


def test_exactly_512_kb_is_allowed():
    data = PNG + b"\x00" * (512 * 1024 - len(PNG))
    assert picture_check(url("image/png", data)).startswith("data:image/png;base64,")


def test_save_is_audited_without_the_bytes_and_refused_to_a_viewer(workspace):
    seg = Segment.objects.create(workspace=workspace, key="vip", name="VIP", rule={"segment": "x"})
    p = persona_save(segment=seg, actor=SYSTEM, description=" 常連 ", goals="速く届く\n\n安い\n",
                     pain_points=["待ち時間"], preferred_channels=["line", "line", "email"],
                     picture=url("image/png", PNG))
    assert (p.description, p.goals, p.pain_points, p.preferred_channels) == ("常連", ["速く届く", "安い"], ["待ち時間"],
                                                                              ["line", "email"])
    entry = AuditEntry.objects.get(action="persona.created")
    assert entry.target == "vip" and entry.data["picture_bytes"] == len(PNG) and "base64" not in str(entry.data)
    persona_save(segment=seg, actor=SYSTEM, description="x")  # picture None: kept
    p.refresh_from_db()
    assert p.picture == url("image/png", PNG) and AuditEntry.objects.filter(action="persona.updated").count() == 1
    with pytest.raises(ValidationError) as exc:
        persona_save(segment=seg, actor=SYSTEM, preferred_channels=["E-mail!"])
    assert exc.value.field == "preferred_channels"
    viewer = user_create(username="v", password="correct-horse-battery")
    membership_add(workspace=workspace, user=viewer, role="viewer", actor=SYSTEM)
    with pytest.raises(PermissionDenied):
        persona_save(segment=seg, actor=viewer, description="no")


def test_figures_share_spend_channels_and_trend(workspace, source):
    people = Customer.objects.bulk_create([Customer(workspace=workspace, user_id=f"u{i}") for i in range(4)])
    a, b, c, _d = people
    a.channels, b.channels, c.channels = {"web": 1, "line": 2}, {"web": 1}, {"store": 1}
    for x in (a, b, c):
        x.save()
    seg = Segment.objects.create(workspace=workspace, key="s", name="S", rule={"segment": "x"})
    now = dt.datetime(2026, 3, 10, 12, 0, tzinfo=TOKYO)
    for x in (a, b):
        Membership.objects.create(workspace=workspace, segment=seg, customer=x)
    day = lambda n: now - dt.timedelta(days=n)  # noqa: E731
    # c entered 5 days ago and left 2 days ago; a entered 3 days ago; b entered 40 days ago (before the window).
    for who, entered, at in ((b, True, day(40)), (c, True, day(5)), (a, True, day(3)), (c, False, day(2))):
        MembershipChange.objects.create(workspace=workspace, segment=seg, customer=who, entered=entered, at=at,
                                        reason="event", published_at=at)
    for who, revenue in ((a, 1000), (a, 500.5), (b, "free"), (c, 9999)):  # c is no member now; "free" no number
        Event.objects.create(workspace=workspace, source=source, message_id=f"m{who.pk}{revenue}", type="track",
                             event="Order Completed", customer=who, channel="web", timestamp=now, received_at=now,
                             properties={"revenue": revenue})
    stats = persona_stats(persona=type("P", (), {"segment": seg})(), tz=TOKYO, now=now)
    assert stats["size"] == 2 and stats["share"] == 0.5
    assert stats["average_spend"] == pytest.approx(1500.5 / 2)
    assert stats["top_channels"] == [("web", 2), ("line", 1)]
    trend = dict(persona_trend(segment=seg, tz=TOKYO, now=now))
    assert len(trend) == 30 and min(trend) == dt.date(2026, 2, 9) and max(trend) == dt.date(2026, 3, 10)
    assert [trend[dt.date(2026, 3, n)] for n in (4, 5, 6, 7, 8, 9, 10)] == [1, 2, 2, 3, 2, 2, 2]


def test_the_demos_personas_describe_its_segments_with_pictures(workspace):
    from tsunagu.demo.personas import PERSONAS, demo_personas, portrait
    from tsunagu.demo.segments import demo_segments
    from tsunagu.segments.models import Persona

    demo_segments(workspace=workspace, actor=SYSTEM)
    assert demo_personas(workspace=workspace, actor=SYSTEM) == [key for key, _f, _c in PERSONAS]
    for persona in Persona.objects.filter(workspace=workspace):
        assert picture_check(persona.picture) == persona.picture and persona.picture.startswith("data:image/png")
        assert persona.goals and persona.preferred_channels
    image = portrait((6, 199, 85), size=32)
    assert image.startswith(b"\x89PNG") and struct_size(image) == (32, 32)


def struct_size(png: bytes) -> tuple[int, int]:
    import struct

    return struct.unpack(">II", png[16:24])
