"""How long an SMS is, and how many parts it is sent in (GSM 03.38 / 3GPP TS 23.038).

A text made only of the GSM-7 default alphabet is sent 7 bits a character: 160 characters in one message,
153 a part once it is split (the user data header of a concatenated SMS takes 7 septets). A character of
the extension table (``€ [ ] { } \\ ^ ~ |`` and form feed) is an escape plus a character: it counts 2.
Anything else — Japanese, an emoji, a curly quote — makes the whole message UCS-2: 70 UTF-16 code units in
one message, 67 a part; a character outside the Basic Multilingual Plane (most emoji) is a surrogate pair
and counts 2. Carriers never split an escape sequence or a surrogate pair across two parts, so a part
may hold one unit fewer than its capacity; the count below packs the parts the same way, which is what the
customer is billed for.
"""

from __future__ import annotations

from dataclasses import dataclass

# The GSM-7 default alphabet (the escape 0x1B itself is not a character one can write).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each is sent as ESC + a septet.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


@dataclass(frozen=True, slots=True)
class SmsLength:
    encoding: str  # "GSM-7" | "UCS-2"
    length: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int  # parts the message is sent in; 0 for an empty text

    def as_dict(self) -> dict[str, object]:
        return {"encoding": self.encoding, "length": self.length, "segments": self.segments}


def is_gsm7(text: str) -> bool:
    """True when every character of ``text`` is in the GSM-7 default alphabet or its extension table."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _units(text: str, gsm7: bool) -> list[int]:
    if gsm7:
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def measure(text: str) -> SmsLength:
    """The encoding, length and number of parts of ``text`` as an SMS."""
    gsm7 = is_gsm7(text)
    units = _units(text, gsm7)
    length = sum(units)
    single, part = (GSM7_SINGLE, GSM7_PART) if gsm7 else (UCS2_SINGLE, UCS2_PART)
    if length == 0:
        segments = 0
    elif length <= single:
        segments = 1
    else:
        # Fill parts without splitting a two-unit character across them.
        segments, used = 1, 0
        for size in units:
            if used + size > part:
                segments, used = segments + 1, 0
            used += size
    return SmsLength("GSM-7" if gsm7 else "UCS-2", length, segments)
