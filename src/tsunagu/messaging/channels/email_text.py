"""Plain text from an email's HTML, for the text part when a variant gives none: blocks on their own
lines, lists, links as ``text (url)``, hidden preview text left out. Hand-written because the well-known
converters are GPL (html2text) or do not give the ``text (url)`` form (inscriptis)."""

from __future__ import annotations

import html as html_lib
import re

# --------------------------------------------------------------------------------------------- text
_BLOCKS = frozenset(
    ("address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt", "fieldset", "figcaption")
    + ("figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav")
    + ("ol", "p", "pre", "section", "table", "tbody", "thead", "tfoot", "tr", "ul")
)
_SKIP = frozenset(("head", "script", "style", "title", "template", "noscript", "xml"))
_VOID = frozenset(
    ("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr")
)
_HIDDEN = re.compile(r"display\s*:\s*none|mso-hide\s*:\s*all", re.IGNORECASE)
_SPACE = re.compile(r"[ \t\r\n\f\u200b]+")


_TOKEN = re.compile(r"<!--.*?(?:-->|\Z)|<[!?][^>]*>|<(/?)([A-Za-z][A-Za-z0-9:-]*)([^>]*)>|[^<]+|<", re.DOTALL)
_ATTR = re.compile(r"""([A-Za-z_:][-A-Za-z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")


def _attrs(text: str) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for match in _ATTR.finditer(text):
        value = next((v for v in match.group(2, 3, 4) if v is not None), None)
        found.append((match.group(1).lower(), html_lib.unescape(value) if value is not None else None))
    return found


class _TextWriter:
    """HTML to readable plain text: blocks on their own lines, links as ``text (url)``, list items with
    ``- `` or their number, headings and paragraphs set apart, hidden preheaders left out.

    Tokenised with one regular expression rather than ``html.parser``, which is several times slower and
    runs for every message whose text part is generated; email HTML is simple enough for it."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.breaks = 0  # newlines owed before the next text
        self.started = False
        self.skip = 0  # depth inside head/script/style/hidden elements
        self.skip_stack: list[str] = []
        self.pre = 0
        self.links: list[tuple[str, int]] = []  # (href, index in out where the link text starts)
        self.lists: list[list[int]] = []  # [counter] per open list, -1 for ul
        self.cell = False

    def _block(self, lines: int) -> None:
        if self.started:
            self.breaks = max(self.breaks, lines)

    def _write(self, text: str) -> None:
        if self.breaks:
            self.out.append("\n" * self.breaks)
            self.breaks = 0
            self.cell = False
        elif self.cell:
            self.out.append(" ")
            self.cell = False
        self.out.append(text)
        self.started = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]], hidden: bool = False) -> None:
        if self.skip:
            if tag == self.skip_stack[-1] and tag not in _VOID:
                self.skip += 1
            return
        if tag in _SKIP or hidden:
            self.skip, self.skip_stack = 1, [tag]
            return
        if tag == "br":
            if self.breaks:
                self.breaks += 1
            elif self.started:
                self.out.append("\n")
                self.cell = False
        elif tag == "hr":
            self._block(2)
            self._write("-" * 40)
            self._block(2)
        elif tag in ("p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol"):
            self._block(2)
        elif tag in _BLOCKS:
            self._block(1)
        elif tag in ("td", "th") and self.started and not self.breaks:
            self.cell = True
        if tag == "pre":
            self.pre += 1
        elif tag in ("ul", "ol"):
            self.lists.append([0 if tag == "ol" else -1])
        elif tag == "li":
            counter = self.lists[-1] if self.lists else [-1]
            if counter[0] >= 0:
                counter[0] += 1
                self._write(f"{counter[0]}. ")
            else:
                self._write("- ")
            self.started = True
        elif tag == "a":
            self.links.append((next((v or "" for k, v in attrs if k == "href"), ""), len(self.out)))
        elif tag == "img":
            alt = next((v for k, v in attrs if k == "alt" and v), "")
            if alt and self.links:
                self._write(alt.strip())

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            if tag == self.skip_stack[-1]:
                self.skip -= 1
            return
        if tag == "a" and self.links:
            href, start = self.links.pop()
            label = "".join(self.out[start:]).strip()
            target = href.strip()
            shown = target[7:] if target.lower().startswith("mailto:") else target
            shown = shown[4:] if shown.lower().startswith("tel:") else shown
            if target and not target.startswith("#") and not target.lower().startswith("javascript:"):
                if not label:
                    self._write(shown)
                elif label != shown and label.rstrip("/") != shown.rstrip("/"):
                    self._write(f" ({shown})")
        elif tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self._block(2)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self._block(2)
        elif tag in ("p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table"):
            self._block(2)
        elif tag in _BLOCKS:
            self._block(1)

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            self._write(data)
            return
        text = _SPACE.sub(" ", data)
        if not text.strip():
            if text and self.out and not self.breaks and not self.out[-1].endswith((" ", "\n")):
                self.cell = True  # a space between inline words, written only if words follow
            return
        if self.breaks or not self.out or self.out[-1].endswith(("\n", " ")):
            text = text.lstrip()
        self._write(text)

    def text(self) -> str:
        while self.links:  # an <a> never closed still shows where it pointed
            self.handle_endtag("a")
        raw = "".join(self.out)
        lines = [line.rstrip() for line in raw.split("\n")]
        joined = "\n".join(lines).strip("\n")
        return re.sub(r"\n{3,}", "\n\n", joined) + "\n"

    def feed(self, html: str) -> None:
        for token in _TOKEN.finditer(html):
            chunk, end, tag, rest = token.group(0, 1, 2, 3)
            if tag is None:
                if chunk[:2] not in ("<!", "<?"):
                    self.handle_data(html_lib.unescape(chunk) if "&" in chunk else chunk)
                continue
            tag = tag.lower()
            if end:
                self.handle_endtag(tag)
                continue
            attrs = _attrs(rest) if tag in ("a", "img") or "hidden" in rest else []
            hidden = (
                tag not in _VOID
                and ("none" in rest or "hidden" in rest)
                and (_HIDDEN.search(rest) is not None or any(k == "hidden" for k, _ in attrs))
            )
            self.handle_starttag(tag, attrs, hidden)
            if rest.endswith("/") and tag not in _VOID:
                self.handle_endtag(tag)


def html_to_text(html: str) -> str:
    """A readable plain-text rendering of an email's HTML, for the text/plain part."""
    writer = _TextWriter()
    writer.feed(html)
    return writer.text()
