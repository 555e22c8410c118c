"""SMS length and parts: GSM-7 160/153 with the extension table counting 2, UCS-2 70/67 in UTF-16 units."""

from __future__ import annotations

import pytest

from tsunagu.messaging.channels.sms import Channel
from tsunagu.messaging.smstext import measure


@pytest.mark.parametrize(
    ("text", "encoding", "length", "segments"),
    [
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¡ÄÖÑÜ§¿äöñüà", "GSM-7", 41, 1),
        ("€" * 80, "GSM-7", 160, 1),
        ("€" + "a" * 159, "GSM-7", 161, 2),
        ("{}[]~|^\\", "GSM-7", 16, 1),
        ("あ" * 70, "UCS-2", 70, 1),
        ("あ" * 71, "UCS-2", 71, 2),
        ("ご注文の商品を発送しました。" * 10, "UCS-2", 140, 3),
        ("a" * 159 + "é", "GSM-7", 160, 1),
        ("a" * 159 + "á", "UCS-2", 160, 3),  # á is not GSM-7: the whole message turns UCS-2
        ("😀" * 35, "UCS-2", 70, 1),
        ("😀" * 35 + "a", "UCS-2", 71, 2),
        ("", "GSM-7", 0, 0),
    ],
)
def test_measure(text: str, encoding: str, length: int, segments: int) -> None:
    assert measure(text).as_dict() == {"encoding": encoding, "length": length, "segments": segments}


def test_an_escape_sequence_is_not_split_across_parts() -> None:
    # 306 septets fill two parts exactly, unless the euro would straddle the boundary at 153: then it
    # starts the second part and the last septet spills into a third.
    text = "a" * 152 + "€" + "a" * 152
    assert measure(text).length == 306
    assert measure(text).segments == 3
    assert measure("a" * 151 + "€" + "a" * 153).segments == 2


def test_a_surrogate_pair_is_not_split_across_parts() -> None:
    assert measure("あ" * 66 + "😀" + "あ" * 66).segments == 3  # 66 + 2 does not fit 67
    assert measure("あ" * 65 + "😀" + "あ" * 67).segments == 2


def test_finish_reports_the_count() -> None:
    assert Channel.finish({"text": "ご注文ありがとうございます"}) == {
        "text": "ご注文ありがとうございます", "encoding": "UCS-2", "length": 13, "segments": 1}
    with pytest.raises(ValueError, match="empty"):
        Channel.finish({"text": "  "})
