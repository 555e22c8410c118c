"""Liquid templates of communications: checking them when saved, rendering them for a customer.

Liquid (python-liquid) is sandboxed by design: a template reads only the values it is given — no attribute
access on Python objects, no dunder names (a syntax error), no imports — and ``include``/``render`` find
nothing, because the loader is empty. Limits bound loops and output so a template cannot hang a worker.
HTML fields are rendered with auto-escaping (a customer's name cannot inject markup); text, SMS, LINE and
JSON fields are not escaped (they are not HTML), JSON payloads use the ``json`` filter for values.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import orjson
from liquid import BoundTemplate, DictLoader, Environment
from liquid.exceptions import LiquidError
from liquid.extra import JSON

from tsunagu.messaging.channels import TYPES, channel_class

# Variant fields that are templates, and whether they are HTML (auto-escaped).
_HTML_FIELDS = frozenset({"html", "mjml"})
# Variant fields that are not templates (JSON objects given as such).
_DATA_FIELDS = frozenset({"flex", "button"})
MAX_TEMPLATE_CHARS = 200_000


class _Env(Environment):
    loop_iteration_limit = 10_000
    output_stream_limit = 2_000_000
    local_namespace_limit = 100_000
    context_depth_limit = 30


@functools.cache
def _env(html: bool) -> Environment:
    env = _Env(loader=DictLoader({}), autoescape=html)
    env.filters["json"] = JSON()  # for webhook payloads: {{ customer.traits | json }}
    return env


@functools.lru_cache(maxsize=4096)
def _compile(source: str, html: bool) -> BoundTemplate:
    return _env(html).from_string(source)


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """A problem found in a variant: where (channel, locale, field, line) and what."""

    channel: str
    locale: str
    field: str
    line: int | None
    message: str
    fatal: bool = True  # syntax errors and unknown filters are; undefined variables are warnings

    def __str__(self) -> str:
        where = f"variant {self.channel}/{self.locale}, field {self.field}"
        if self.line:
            where += f", line {self.line}"
        return f"{where}: {self.message}"


def _line_of(exc: LiquidError) -> int | None:
    token = getattr(exc, "token", None)
    source = getattr(token, "source", None)
    index = getattr(token, "start_index", None)
    if isinstance(source, str) and isinstance(index, int):
        return source.count("\n", 0, index) + 1
    return None


def _first_line(exc: LiquidError) -> str:
    return str(exc).split("\n", 1)[0]


def _known_path(context: dict[str, Any], segments: list[Any]) -> bool:
    value: Any = context
    for segment in segments:
        if isinstance(segment, list):  # a nested expression (items[i]): cannot be known statically
            return True
        if isinstance(value, dict) and segment in value:  # noqa: SIM114 - two kinds of lookup, kept apart
            value = value[segment]
        elif isinstance(value, list) and isinstance(segment, int) and -len(value) <= segment < len(value):
            value = value[segment]
        else:
            # ``size``/``first``/``last`` of a list or string are known: Liquid computes them.
            return isinstance(value, (list, str)) and segment in ("size", "first", "last")
    return True


def check_variant(variant: dict[str, Any], *, sample: dict[str, Any]) -> list[TemplateProblem]:
    """Every problem of one variant: each template field parsed; filters that do not exist refused;
    variables no sample customer has reported (as warnings: a trait may exist on other customers)."""
    channel, locale = str(variant.get("channel")), str(variant.get("locale"))
    problems: list[TemplateProblem] = []
    for name, source in variant.items():
        if name in ("channel", "locale") or name in _DATA_FIELDS or not isinstance(source, str):
            continue
        if len(source) > MAX_TEMPLATE_CHARS:
            problems.append(
                TemplateProblem(channel, locale, name, None, f"longer than {MAX_TEMPLATE_CHARS} characters")
            )
            continue
        try:
            template = _compile(source, name in _HTML_FIELDS)
        except LiquidError as exc:
            problems.append(TemplateProblem(channel, locale, name, _line_of(exc), _first_line(exc)))
            continue
        analysis = template.analyze()
        env = _env(name in _HTML_FIELDS)
        for variables in analysis.variables.values():
            for var in variables:
                if any(isinstance(s, str) and s.startswith("_") for s in var.segments):
                    at = source.count("\n", 0, var.span.index) + 1
                    problems.append(
                        TemplateProblem(channel, locale, name, at, "names starting with '_' are not available")
                    )
        for filter_name, spans in analysis.filters.items():
            if filter_name not in env.filters:
                where = source.count("\n", 0, spans[0].index) + 1 if spans else None
                problems.append(TemplateProblem(channel, locale, name, where, f"unknown filter {filter_name!r}"))
        for var_name, variables in analysis.globals.items():
            for var in variables:
                # ``data`` and ``event`` differ with every send: only the customer can be checked.
                if var_name in ("data", "event"):
                    break
                if not _known_path(sample, list(var.segments)):
                    line = source.count("\n", 0, var.span.index) + 1
                    path = ".".join(str(s) for s in var.segments)
                    problems.append(
                        TemplateProblem(
                            channel,
                            locale,
                            name,
                            line,
                            f"{path!r} is undefined for the sample customer",
                            fatal=False,
                        )
                    )
                    break
            del var_name
    return problems


def render_fields(variant: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Render every template field of a variant (the variant was checked when saved). Undefined variables
    render as nothing, as Liquid does. Raises ``LiquidError`` when a limit is hit."""
    out: dict[str, Any] = {}
    for name, source in variant.items():
        if name in ("channel", "locale"):
            continue
        if name in _DATA_FIELDS or not isinstance(source, str):
            out[name] = source
        else:
            out[name] = _compile(source, name in _HTML_FIELDS).render(**context)
    return out


@dataclass(slots=True)
class Rendered:
    """A variant rendered for one customer and finished by its channel: what is sent and archived."""

    channel: str
    locale: str
    content: dict[str, Any]
    subject: str = ""
    text: str = ""
    problems: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=1024)
def _finished_template(channel: str, frozen: bytes) -> dict[str, Any]:
    variant = orjson.loads(frozen)
    return {"channel": variant["channel"], "locale": variant.get("locale", ""), **channel_class(channel).finish(
        {k: v for k, v in variant.items() if k not in ("channel", "locale")}
    )}


def finished_template(variant: dict[str, Any]) -> dict[str, Any]:
    """For a channel whose ``finish`` runs on templates (email): the variant finished once, its fields
    still Liquid templates. Raises ``ValueError`` (bad MJML…)."""
    return _finished_template(str(variant["channel"]), orjson.dumps(variant, option=orjson.OPT_SORT_KEYS))


def render_variant(variant: dict[str, Any], context: dict[str, Any]) -> Rendered:
    """Render and finish one variant. Raises ``ValueError`` with a message naming the variant when the
    result cannot be sent (a limit hit, invalid JSON after rendering)."""
    channel, locale = str(variant["channel"]), str(variant.get("locale", ""))
    cls = channel_class(channel)
    try:
        if cls.finish_first:
            content = render_fields(finished_template(variant), context)
        else:
            content = cls.finish(render_fields(variant, context))
    except (LiquidError, ValueError) as exc:
        raise ValueError(f"variant {channel}/{locale}: {str(exc).splitlines()[0]}") from exc
    subject, text = cls.summary(content)
    return Rendered(channel=channel, locale=locale, content=content, subject=subject, text=text)


def pick_variant(
    variants: list[dict[str, Any]], *, channel: str, locale: str, default_locale: str
) -> dict[str, Any] | None:
    """The variant for ``channel`` in the customer's locale, else the workspace default, else the first."""
    mine = [v for v in variants if v.get("channel") == channel]
    if not mine:
        return None
    wanted = (locale or "").lower()
    for candidate in (wanted, wanted.split("-")[0], default_locale):
        for v in mine:
            if candidate and str(v.get("locale", "")).lower() == candidate:
                return v
    return mine[0]


def variant_channels(variants: list[dict[str, Any]]) -> list[str]:
    """Channels in the order their first variant appears (the order of "first usable")."""
    seen: list[str] = []
    for v in variants:
        c = str(v.get("channel"))
        if c in TYPES and c not in seen:
            seen.append(c)
    return seen
