"""The message archive's search: an n-gram index over every delivery's subject and plain text.

Japanese has no spaces between words, so a word index cannot find 返金 inside 返金のご案内. The index holds
character n-grams instead: for each position of a run of letters and digits, the *bigram* there when both
characters are wide (kanji, kana, full-width forms: a two-character Japanese word is one bigram) and the
*trigram* otherwise (Latin words, numbers: bigrams of ``[a-z0-9]`` are in nearly every message and would
select nothing). A query is turned into the same grams and the index returns the deliveries holding all
of them — a superset of the matches — and the query then keeps only the rows that an ORM filter
``Q(subject__icontains=q) | Q(body_text__icontains=q)`` keeps, written with the backend's own ``icontains``
SQL. So results are exactly the ORM's (``tests/test_archive_search_equivalence.py`` proves it), the index
only decides how few rows are read.

Why the index is a superset: text is folded per character (``_fold``: upper then lower case, so both
backends' case-insensitive ``LIKE`` matches fold alike), and a gram depends only on the characters it
covers, so every gram of a substring is a gram of the text that contains it. Queries without a gram (one
character, two Latin letters or digits, punctuation only) scan with ``icontains`` — newest first and
stopping at ``limit``, fast for common strings and slow (a table scan) for rare ones.

Storage: SQLite — an FTS5 table (``content=''``: the grams are not stored, only the inverted index;
``detail=none``: no positions, a query is an AND of grams); PostgreSQL — a table of ``tsvector`` with a GIN
index, lexemes written verbatim (no text-search parsing or dictionary). Both are created by migration
``0002_archive_index``. A delivery's subject and text are immutable once archived (``models.Delivery``),
so ``archive_unindex`` recomputes the grams it removes; stale grams (of a row deleted by another path) can
only add candidates, never hide a match, since every candidate is joined to its delivery and checked.

Changing ``grams`` changes what is indexed: it needs a migration that rebuilds the index
(``archive_rebuild``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet

from tsunagu.core.errors import ValidationError
from tsunagu.core.models import Workspace
from tsunagu.messaging.models import ChannelType, Communication, Delivery

TABLE = "messaging_archive_index"
MAX_QUERY = 200
MAX_LIMIT = 200
# A message longer than this is indexed on its first characters only; the search would still find a later
# word through the icontains scan of a query without grams, but not through the index. 200,000 characters
# is ~100 pages of text, far more than any message a channel carries.
MAX_INDEXED = 200_000

_RUN = re.compile(r"[^\W_]+")  # letters and digits of every script (str.isalnum)
_CHANNELS = frozenset(ChannelType.values)
_STATUSES = frozenset(Delivery.Status.values)


# CJK radicals onwards: kana, kanji, Hangul, full-width forms are wide; everything before them narrow.
WIDE = "\u2e80"


def _fold(text: str) -> str:
    """Case-fold so that a backend's case-insensitive match implies a substring of the folded text.

    ``upper`` first (what PostgreSQL's ``UPPER() LIKE UPPER()`` compares), then ``lower`` (ASCII, what
    SQLite's ``LIKE`` ignores); Python's ``lower`` writes a final sigma depending on what follows it, the
    one context rule, undone so that folding stays character by character."""
    return text.upper().lower().replace("ς", "σ")


def grams(text: str) -> set[str]:
    """The distinct grams of ``text`` (see the module docstring); empty when it has none."""
    out: set[str] = set()
    for run in _RUN.findall(_fold(text[:MAX_INDEXED])):
        n = len(run)
        if n < 2:
            continue
        # Runs of one kind (most of them) in one comprehension each; mixed runs character by character.
        if min(run) >= WIDE:
            out.update([run[i : i + 2] for i in range(n - 1)])
        elif max(run) < WIDE:
            out.update([run[i : i + 3] for i in range(n - 2)])
        else:
            for i in range(n - 1):
                if run[i] >= WIDE and run[i + 1] >= WIDE:
                    out.add(run[i : i + 2])
                elif i + 2 < n:
                    out.add(run[i : i + 3])
    return out


# Facts of a delivery that never change, as tokens beside its grams, so the index itself narrows a search
# to a workspace, a channel, a communication or a period (the ``created_at`` year, month and day, in UTC).
# Grams are at most three characters, these at least four, so the two never meet.
def _fact_tokens(*, workspace_id: int, channel_type: str, communication_id: int, created_at: dt.datetime) -> set[str]:
    at = created_at.astimezone(dt.UTC)
    return {f"0ws{workspace_id}", _channel_token(channel_type), f"0cm{communication_id}", f"0yr{at.year}",
            f"0mo{at.year}{at.month:02d}", f"0dy{at.year}{at.month:02d}{at.day:02d}"}


def _channel_token(channel_type: str) -> str:
    return "0ch" + channel_type.replace("_", "")  # in_app: a token is letters and digits only


def document(delivery: Any) -> set[str]:
    """Every token of one delivery (any object with a Delivery's fields, historical models included)."""
    return grams(f"{delivery.subject}\n{delivery.body_text}") | _fact_tokens(
        workspace_id=delivery.workspace_id, channel_type=delivery.channel_type,
        communication_id=delivery.communication_id, created_at=delivery.created_at,
    )


def _period_tokens(lo: dt.datetime, hi: dt.datetime) -> list[str] | None:
    """Tokens covering the UTC days from ``lo`` to ``hi`` (inclusive): whole years and whole months as one
    token each, the days at the ends one by one (at most ~90 tokens); None when the period is too long for
    it to narrow anything."""
    d, last = lo.astimezone(dt.UTC).date(), hi.astimezone(dt.UTC).date()
    if last < d:
        return []
    if (last - d).days > 3 * 366:
        return None
    out: list[str] = []
    while d <= last:
        if d.month == 1 and d.day == 1 and dt.date(d.year, 12, 31) <= last:
            out.append(f"0yr{d.year}")
            d = dt.date(d.year + 1, 1, 1)
            continue
        following = dt.date(d.year + (d.month == 12), d.month % 12 + 1, 1)
        if d.day == 1 and following - dt.timedelta(days=1) <= last:
            out.append(f"0mo{d.year}{d.month:02d}")
            d = following
            continue
        out.append(f"0dy{d.year}{d.month:02d}{d.day:02d}")
        d += dt.timedelta(days=1)
    return out


# -- keeping the index in step ---------------------------------------------------------------------------


def archive_index(*, deliveries: Sequence[Delivery]) -> None:
    """Index the subject and plain text of ``deliveries`` (saved rows). Call it in the transaction that
    creates or renders them, so that the index commits or rolls back with them. Indexing a delivery again
    is harmless (PostgreSQL replaces its row; SQLite's entries are a set per row)."""
    rows = [(d.pk, document(d)) for d in deliveries if d.pk is not None]
    _write(rows)


def archive_unindex(*, deliveries: Iterable[Delivery]) -> None:
    """Remove ``deliveries`` from the index (before or after they are deleted, in the same transaction).
    On SQLite the entries removed are recomputed from the rows' subject and text, which never change."""
    rows = [(d.pk, document(d)) for d in deliveries if d.pk is not None]
    if not rows:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("DELETE FROM messaging_archive_index WHERE delivery_id = ANY(%s)", [[pk for pk, _ in rows]])
        else:
            cursor.executemany(
                "INSERT INTO messaging_archive_index(messaging_archive_index, rowid, tokens) VALUES ('delete', %s, %s)",
                [(pk, " ".join(sorted(g))) for pk, g in rows],
            )


def archive_rebuild(*, batch: int = 2000) -> int:
    """Index every delivery again from scratch (after a change of ``grams``, or to repair); returns the
    number of deliveries indexed. Runs in the caller's transaction, if any."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("TRUNCATE messaging_archive_index")
        else:
            cursor.execute("INSERT INTO messaging_archive_index(messaging_archive_index) VALUES ('delete-all')")
    done, last = 0, 0
    while True:
        fields = ("pk", "workspace_id", "channel_type", "communication_id", "created_at", "subject", "body_text")
        chunk = list(Delivery.objects.filter(pk__gt=last).order_by("pk").only(*fields)[:batch])
        if not chunk:
            return done
        _write([(d.pk, document(d)) for d in chunk])
        done += len(chunk)
        last = chunk[-1].pk


def _write(rows: list[tuple[int, set[str]]]) -> None:
    if not rows:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.executemany(
                "INSERT INTO messaging_archive_index (delivery_id, tokens) VALUES (%s, array_to_tsvector(%s::text[])) "
                "ON CONFLICT (delivery_id) DO UPDATE SET tokens = EXCLUDED.tokens",
                [(pk, sorted(g)) for pk, g in rows],
            )
        else:
            cursor.executemany(
                "INSERT INTO messaging_archive_index(rowid, tokens) VALUES (%s, %s)",
                [(pk, " ".join(sorted(g))) for pk, g in rows],
            )


def sqlite_row(delivery: Any) -> tuple[int, str]:
    """The parameters of one SQLite index row, for bulk loaders (the benchmark) that bypass the ORM."""
    return delivery.pk, " ".join(sorted(document(delivery)))


# -- search ----------------------------------------------------------------------------------------------


def archive_filters(
    *,
    workspace: Workspace,
    q: str | None = None,
    customer_id: int | None = None,
    channel: str | None = None,
    status: str | None = None,
    communication_key: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> dict[str, Any]:
    """Validate the search's input; ValidationError names the field at fault. ``q`` is stripped and an
    empty one is no text filter. ``since`` is inclusive, ``until`` exclusive, both on ``created_at``."""
    if q is not None:
        if not isinstance(q, str):
            raise ValidationError("q must be text", field="q")
        if "\x00" in q:
            raise ValidationError("q must not contain NUL characters", field="q")
        q = q.strip() or None
        if q is not None and len(q) > MAX_QUERY:
            raise ValidationError(f"q must be at most {MAX_QUERY} characters", field="q")
    if channel is not None and channel not in _CHANNELS:
        raise ValidationError(f"unknown channel {channel!r}; one of {', '.join(sorted(_CHANNELS))}", field="channel")
    if status is not None and status not in _STATUSES:
        raise ValidationError(f"unknown status {status!r}; one of {', '.join(sorted(_STATUSES))}", field="status")
    for name, value in (("since", since), ("until", until)):
        if value is not None and (not isinstance(value, dt.datetime) or value.tzinfo is None):
            raise ValidationError(f"{name} must be a date and time with a time zone", field=name)
    if since is not None and until is not None and since > until:
        raise ValidationError("since must not be after until", field="since")
    for name, number in (("customer_id", customer_id), ("before_id", before_id)):
        if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < 1):
            raise ValidationError(f"{name} must be a positive integer", field=name)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    if communication_key is not None and (not isinstance(communication_key, str) or "\x00" in communication_key):
        raise ValidationError("communication must be a communication key", field="communication")
    return {
        "workspace": workspace, "q": q, "customer_id": customer_id, "channel": channel, "status": status,
        "communication_key": communication_key, "since": since, "until": until, "limit": limit,
        "before_id": before_id,
    }


def archive_queryset(f: dict[str, Any]) -> QuerySet[Delivery]:
    """The ORM statement of a validated search (``archive_filters``), newest first, without the limit: what
    ``archive_search`` returns is exactly its first ``limit`` rows. Also the export's query."""
    qs = Delivery.objects.filter(workspace=f["workspace"])
    if f["customer_id"] is not None:
        qs = qs.filter(customer_id=f["customer_id"])
    if f["channel"] is not None:
        qs = qs.filter(channel_type=f["channel"])
    if f["status"] is not None:
        qs = qs.filter(status=f["status"])
    if f["communication_key"] is not None:
        qs = qs.filter(communication__key=f["communication_key"])
    if f["since"] is not None:
        qs = qs.filter(created_at__gte=f["since"])
    if f["until"] is not None:
        qs = qs.filter(created_at__lt=f["until"])
    if f["before_id"] is not None:
        qs = qs.filter(pk__lt=f["before_id"])
    if f["q"] is not None:
        qs = qs.filter(Q(subject__icontains=f["q"]) | Q(body_text__icontains=f["q"]))
    return qs.order_by("-pk")


def archive_search(
    *,
    workspace: Workspace,
    q: str | None = None,
    customer_id: int | None = None,
    channel: str | None = None,
    status: str | None = None,
    communication_key: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[Delivery]:
    """Archived deliveries of ``workspace`` matching every filter given, newest (highest id) first, at most
    ``limit``; the next page is ``before_id=<id of the last row>``. ``q`` matches the subject or the plain
    text, case-insensitively, as a substring (Japanese words of two characters included). The rows come
    without ``raw`` loaded (the .eml bytes; read on access). Read-only: no transaction needed."""
    f = archive_filters(
        workspace=workspace, q=q, customer_id=customer_id, channel=channel, status=status,
        communication_key=communication_key, since=since, until=until, limit=limit, before_id=before_id,
    )
    return archive_page(f)


def archive_page(f: dict[str, Any]) -> list[Delivery]:
    """One page of a validated search (``archive_filters``)."""
    terms = grams(f["q"]) if f["q"] is not None else set()
    # A customer's messages are few and their (customer, created_at) index is the cheapest way in. Otherwise
    # the archive index drives when it narrows anything: grams of the text, or the facts it holds (channel,
    # communication, month); a status alone, or nothing, walks the deliveries newest first.
    narrows = terms or any(f[k] is not None for k in ("since", "until", "channel", "communication_key"))
    if f["customer_id"] is not None or not narrows:
        return list(archive_queryset(f).defer("raw")[: f["limit"]])
    ids = _indexed_ids(f, terms)
    found = Delivery.objects.defer("raw").in_bulk(ids)
    return [found[i] for i in ids if i in found]


def _indexed_ids(f: dict[str, Any], terms: set[str]) -> list[int]:
    vendor = connection.vendor
    ws = f["workspace"]
    where, params = ["d.workspace_id = %s"], [ws.pk]
    required = {f"0ws{ws.pk}", *terms}
    if f["communication_key"] is not None:
        comms = Communication.objects.filter(workspace=ws, key=f["communication_key"]).values_list("pk", flat=True)
        comm = comms.first()
        if comm is None:
            return []
        where.append("d.communication_id = %s")
        params.append(comm)
        required.add(f"0cm{comm}")
    if f["channel"] is not None:
        where.append("d.channel_type = %s")
        params.append(f["channel"])
        required.add(_channel_token(f["channel"]))
    if f["status"] is not None:
        where.append("d.status = %s")
        params.append(f["status"])
    period: list[str] | None = None
    if f["since"] is not None or f["until"] is not None:
        period = _period(f)
        if period == []:
            return []
    for key, op in (("since", ">="), ("until", "<")):
        if f[key] is not None:
            where.append(f"d.created_at {op} %s")
            params.append(connection.ops.adapt_datetimefield_value(f[key]))
    if f["q"] is not None:
        # The ORM's own icontains, so that the rows kept are exactly the rows it keeps.
        cast = connection.ops.lookup_cast("icontains")
        like = connection.operators["icontains"]
        pattern = f"%{connection.ops.prep_for_like_query(f['q'])}%"
        where.append(f"({cast % 'd.subject'} {like % '%s'} OR {cast % 'd.body_text'} {like % '%s'})")
        params += [pattern, pattern]
    ordered = sorted(required)
    # Tokens are letters and digits only (grams: ``_RUN``; facts: ids, channel types), so quoting them
    # needs no escaping.
    if vendor == "postgresql":
        key = "i.delivery_id"
        expr = " & ".join(f"'{t}'" for t in ordered)
        if period:
            expr += " & (" + " | ".join(f"'{t}'" for t in period) + ")"
        match = "i.tokens @@ %s::tsquery"
        source = f"{TABLE} AS i JOIN messaging_delivery AS d ON d.id = i.delivery_id"
    else:
        key = "i.rowid"
        expr = " AND ".join(f'"{t}"' for t in ordered)
        if period:
            expr += " AND (" + " OR ".join(f'"{t}"' for t in period) + ")"
        match = f"{TABLE} MATCH %s"
        # CROSS JOIN: SQLite keeps the index as the outer loop and walks it newest first, so a page stops
        # after ``limit`` hits instead of sorting every match.
        source = f"{TABLE} AS i CROSS JOIN messaging_delivery AS d ON d.id = i.rowid"
    match_params: list[Any] = [expr]
    bound = []
    if f["before_id"] is not None:
        bound, match_params = [f"{key} < %s"], [*match_params, f["before_id"]]
    sql = (
        f"SELECT d.id FROM {source} WHERE {' AND '.join([match, *bound, *where])} "  # noqa: S608
        f"ORDER BY {key} DESC LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*match_params, *params, f["limit"]])
        return [row[0] for row in cursor.fetchall()]


def _period(f: dict[str, Any]) -> list[str] | None:
    """The month tokens of ``[since, until)``, an open end closed by the workspace's first or last message
    (one step down its ``(workspace, created_at)`` index); [] when no message can be in it."""
    rows = Delivery.objects.filter(workspace=f["workspace"]).values_list("created_at", flat=True)
    lo = f["since"] if f["since"] is not None else rows.order_by("created_at").first()
    hi = f["until"] - dt.timedelta(microseconds=1) if f["until"] is not None else rows.order_by("-created_at").first()
    if lo is None or hi is None or lo > hi:
        return []
    return _period_tokens(lo, hi)
