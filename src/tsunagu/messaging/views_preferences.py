"""The preference page, ``/m/p/<token>``: a customer's own page (no login) to choose which topics reach them
on which channels, or to unsubscribe from all. Every message to a known customer links it as
``preferences_url`` (``messaging.links``).

The token is signed (``links.preferences_token``): it names the customer and cannot be made for another.
A token that is not ours, or a customer who no longer exists, gets the same 404 page, which tells nothing.
Unlike the RFC 8058 one-click POST, this is an ordinary form: CSRF-protected. Each change is a consent
decision (``consent.consent_set``, source ``preference_page``) whose proof is the wording the customer saw,
in the language they saw it; each reaches the timeline as ``Consent Granted`` / ``Consent Revoked``.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from tsunagu.core.permissions import SYSTEM
from tsunagu.messaging.consent import consent_decision, consent_set, consents_in_force
from tsunagu.messaging.context import customer_locale
from tsunagu.messaging.links import preferences_customer
from tsunagu.messaging.selectors import customer_ids
from tsunagu.messaging.selectors_reports import preference_customer, workspace_channel_types

LANGUAGES = ("ja", "en")
SOURCE = "preference_page"
TOPICS = (
    ("marketing", gettext_lazy("News and offers"), gettext_lazy("Campaigns, sales, newsletters.")),
    ("service", gettext_lazy("Service notices"), gettext_lazy("News about the services you use, such as changes.")),
)
CHANNEL_NAMES = {
    "email": gettext_lazy("Email"),
    "sms": gettext_lazy("SMS"),
    "line": gettext_lazy("LINE"),
    "webpush": gettext_lazy("Web push"),
    "in_app": gettext_lazy("In-app"),
}


def _short(value: Any) -> str:
    return str(value or "").replace("_", "-").split("-")[0].lower()


def page_language(request: HttpRequest, customer: Any) -> str:
    """The switch link's choice, else the customer's ``locale`` trait, else the workspace's default
    language, else the browser's; Japanese when none of them is one the page speaks."""
    asked = request.GET.get("lang", "")
    if asked in LANGUAGES:
        return asked
    if customer is not None:
        for value in (customer_locale(customer), customer.workspace.default_locale):
            if _short(value) in LANGUAGES:
                return _short(value)
    browser = _short(translation.get_language_from_request(request))
    return browser if browser in LANGUAGES else "ja"


def _channels(customer: Any) -> list[str]:
    # A webhook reaches a system, not the customer: not a choice of theirs.
    return [t for t in workspace_channel_types(workspace=customer.workspace) if t in CHANNEL_NAMES]


def _choices(customer: Any) -> dict[str, dict[str, bool]]:
    """{topic: {"": every channel not revoked, channel: may receive}} as the customer's consents stand."""
    state = consents_in_force(customer_ids(customer))
    out: dict[str, dict[str, bool]] = {}
    for topic, _title, _help in TOPICS:
        every = state.get(("", topic))
        row = {"": every is None or every[2] != "revoked"}
        for channel in _channels(customer):
            row[channel] = consent_decision(state, channel=channel, topic=topic) == ""
        out[topic] = row
    return out


def wording(topic: str, channel: str, granted: bool) -> str:
    """The sentence a choice means, in the active language: what the consent record keeps as its proof."""
    title = str(dict((t, title) for t, title, _h in TOPICS)[topic])
    if not channel:  # the topic's own box: every channel
        return (_("Receive “%(topic)s”") if granted else _("Do not receive “%(topic)s”")) % {"topic": title}
    where = str(CHANNEL_NAMES[channel])
    if granted:
        return _("Receive “%(topic)s” by %(channel)s") % {"topic": title, "channel": where}
    return _("Do not receive “%(topic)s” by %(channel)s") % {"topic": title, "channel": where}


def _record(customer: Any, channel: str, topic: str, granted: bool, text: str) -> None:
    consent_set(
        customer=customer, channel=channel, topic=topic, status="granted" if granted else "revoked",
        source=SOURCE, text=text, actor=SYSTEM,
    )


def _apply(customer: Any, post: Any) -> int:
    """Record what the posted form changes, and return how many decisions were recorded: per topic, each
    box that differs from what the page showed is a decision — the topic's own box (every channel) first,
    so that a channel box changed in the same form (a later decision) wins for its channel. A box left as
    shown records nothing: unticking the topic's box stops the channels still ticked (the page has no
    script to untick them)."""
    if post.get("action") == "unsubscribe_all":
        text = _("Unsubscribe from all: stop every message except those about my own transactions.")
        for topic, _title, _help in TOPICS:
            _record(customer, "", topic, False, text)
        return len(TOPICS)
    before = _choices(customer)
    count = 0
    for topic, _title, _help in TOPICS:
        every = post.get(f"{topic}-all") == "1"
        if every != before[topic][""]:
            _record(customer, "", topic, every, wording(topic, "", every))
            count += 1
        for channel, allowed in before[topic].items():
            wanted = post.get(f"{topic}-{channel}") == "1"
            if channel and wanted != allowed:
                _record(customer, channel, topic, wanted, wording(topic, channel, wanted))
                count += 1
    return count


def _page(request: HttpRequest, customer: Any, token: str, lang: str, saved: bool) -> HttpResponse:
    choices = _choices(customer)
    topics = [
        {
            "key": topic,
            "title": title,
            "help": help_text,
            "all": choices[topic][""],
            "channels": [
                {"key": c, "name": CHANNEL_NAMES[c], "on": on} for c, on in choices[topic].items() if c
            ],
        }
        for topic, title, help_text in TOPICS
    ]
    other = "en" if lang == "ja" else "ja"
    return render(
        request,
        "messaging/preferences.html",
        {
            "customer": customer, "workspace": customer.workspace, "topics": topics, "token": token, "lang": lang,
            "other_lang": other, "other_name": "English" if other == "en" else "日本語", "saved": saved,
        },
    )


def _private(response: HttpResponse) -> HttpResponse:
    # The token in the URL is the customer's key to this page: no cache keeps it, no other site is told it.
    # Not "no-referrer": browsers then send "Origin: null" with the form, which CSRF protection refuses.
    response["Cache-Control"] = "no-store, private"
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex"
    return response


@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    """``GET /m/p/<token>`` shows the customer's choices; ``POST`` records the changes and shows the page
    again (after a redirect, so a reload does not post twice)."""
    customer_id = preferences_customer(token)
    customer = preference_customer(customer_id) if customer_id is not None else None
    if customer is None:
        with translation.override(page_language(request, None)):
            return _private(render(request, "messaging/preferences.html", {"invalid": True}, status=404))
    lang = page_language(request, customer)
    with translation.override(lang):
        if request.method == "POST":
            _apply(customer, request.POST)
            return _private(HttpResponseRedirect(f"{request.path}?lang={lang}&saved=1"))
        return _private(_page(request, customer, token, lang, saved=request.GET.get("saved") == "1"))
