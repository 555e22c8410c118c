"""Export of the archive: JSON Lines (one delivery with its events per line, the same rows the search
finds, every page of them) and the original .eml of an email."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import io
from typing import Any

import orjson
import pytest

from tsunagu.core import clock
from tsunagu.core.errors import ValidationError
from tsunagu.messaging import archive_export
from tsunagu.messaging.archive_export import archive_eml, archive_export_jsonl
from tsunagu.messaging.tests.factories import eml, make_communication, make_customer, make_delivery


def _lines(buf: io.BytesIO) -> list[dict[str, Any]]:
    data = buf.getvalue()
    assert data == b"" or data.endswith(b"\n")
    return [orjson.loads(line) for line in data.splitlines()]


def test_jsonl_has_each_delivery_with_its_events_newest_first(workspace: Any) -> None:
    t0 = clock.now()
    customer = make_customer(workspace=workspace, email="hanako@example.jp")
    refund = make_communication(workspace=workspace, key="refund-done")
    raw = eml(subject="返金のお知らせ", body="返金が完了しました。", to="hanako@example.jp")
    a = make_delivery(
        workspace=workspace, subject="返金のお知らせ", body_text="返金が完了しました。", customer=customer,
        communication=refund, raw=raw, address="hanako@example.jp", status="delivered",
        events=[("delivered", t0 + dt.timedelta(seconds=2)), ("queued", t0), ("sent", t0 + dt.timedelta(seconds=1))],
    )
    b = make_delivery(workspace=workspace, body_text="配送状況はこちら", channel_type="line", address="U123")
    buf = io.BytesIO()
    assert archive_export_jsonl(workspace=workspace, out=buf) == 2
    rows = _lines(buf)
    assert [r["id"] for r in rows] == [b.pk, a.pk]
    first = rows[1]
    assert first["communication"] == "refund-done" and first["customer_id"] == customer.pk
    assert first["channel"] == "email" and first["address"] == "hanako@example.jp" and first["status"] == "delivered"
    assert first["subject"] == "返金のお知らせ" and first["body_text"] == "返金が完了しました。"
    assert base64.b64decode(first["raw_base64"]) == raw
    assert [e["status"] for e in first["events"]] == ["queued", "sent", "delivered"]
    assert dt.datetime.fromisoformat(first["events"][0]["at"]) == t0
    assert dt.datetime.fromisoformat(first["created_at"]) == a.created_at
    assert rows[0]["raw_base64"] is None and rows[0]["events"] == [] and rows[0]["channel"] == "line"
    # Japanese is written as UTF-8, not escaped.
    assert "返金のお知らせ".encode() in buf.getvalue()


def test_jsonl_takes_the_search_filters_and_every_page(workspace: Any, other_workspace: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_export, "EXPORT_PAGE", 3)
    refunds = [make_delivery(workspace=workspace, subject=f"返金 {i}", body_text="ご返金") for i in range(7)]
    for i in range(4):
        make_delivery(workspace=workspace, subject=f"配送 {i}", body_text="発送しました")
    make_delivery(workspace=other_workspace, subject="返金", body_text="返金")
    buf = io.BytesIO()
    assert archive_export_jsonl(workspace=workspace, q="返金", out=buf) == 7
    assert [r["id"] for r in _lines(buf)] == [d.pk for d in reversed(refunds)]
    buf = io.BytesIO()
    assert archive_export_jsonl(workspace=workspace, out=buf) == 11
    assert len({r["id"] for r in _lines(buf)}) == 11


def test_bad_filters_are_refused_before_anything_is_written(workspace: Any) -> None:
    make_delivery(workspace=workspace, subject="返金")
    buf = io.BytesIO()
    with pytest.raises(ValidationError) as err:
        archive_export_jsonl(workspace=workspace, out=buf, channel="fax")
    assert err.value.field == "channel" and buf.getvalue() == b""


def test_eml_is_the_original_message(workspace: Any) -> None:
    raw = eml(subject="【重要】配送遅延のお詫び", body="大雪の影響により配送が遅れております。", to="taro@example.jp")
    d = make_delivery(workspace=workspace, subject="【重要】配送遅延のお詫び", raw=raw)
    d.refresh_from_db()
    assert archive_eml(delivery=d) == raw
    parsed = email.message_from_bytes(archive_eml(delivery=d), policy=email.policy.default)
    assert parsed["Subject"] == "【重要】配送遅延のお詫び"
    assert "大雪の影響" in parsed.get_content()


def test_eml_is_refused_for_other_channels_and_unrendered_mail(workspace: Any) -> None:
    line = make_delivery(workspace=workspace, body_text="hello", channel_type="line")
    with pytest.raises(ValidationError) as err:
        archive_eml(delivery=line)
    assert err.value.field == "delivery" and "line" in err.value.message
    queued = make_delivery(workspace=workspace, subject="x", status="queued", raw=b"")
    with pytest.raises(ValidationError) as err:
        archive_eml(delivery=queued)
    assert err.value.field == "delivery"
