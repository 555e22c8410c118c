"""LINE Messaging API, with the official ``line-bot-sdk`` (v3).

Sending: push (``POST /v2/bot/message/push``) to one user, multicast (``/v2/bot/message/multicast``) to up
to 500 for broadcasts. Every request carries ``X-Line-Retry-Key``, a UUID derived from the delivery's key,
so a retry after a lost answer is not delivered twice: LINE answers ``409`` to a key it has already
accepted, which here is a success ("already accepted"). ``base_url`` replaces ``https://api.line.me``.

Inbound: the ``events`` webhook, signed with the channel secret (``X-Line-Signature``, base64 of the
HMAC-SHA256 of the body, checked with the SDK's ``SignatureValidator``). follow, unfollow, message and
postback become customer events keyed by ``webhookEventId``, which LINE keeps on redeliveries.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from tsunagu.messaging.channels.base import (
    ChannelBase,
    CustomerEvent,
    DeliveryError,
    InboundRequest,
    Message,
    Outcome,
    StatusReport,
)
from tsunagu.messaging.channels.rate import rate_clean

# Retry keys are UUIDs (LINE refuses anything else); a delivery key that is not one is mapped to one
# deterministically, so every retry of a delivery carries the same key.
RETRY_KEY_NAMESPACE = uuid.UUID("5d0c1c2e-7a55-4f0e-9a57-3b1c6f1d2a10")
TEXT_MAX = 5000
ALT_TEXT_MAX = 1500
MULTICAST_MAX = 500
TIMEOUT = (10.0, 30.0)  # connect, read

EVENTS = {
    "follow": "LINE Friend Added",
    "unfollow": "LINE Blocked",
    "message": "LINE Message Received",
    "postback": "LINE Postback",
}


def retry_key(key: str) -> str:
    """The ``X-Line-Retry-Key`` of a delivery key: the key itself when it is a UUID, else a UUIDv5 of it."""
    try:
        return str(uuid.UUID(key))
    except ValueError:
        return str(uuid.uuid5(RETRY_KEY_NAMESPACE, key))


def _flex_texts(node: Any) -> list[str]:
    """The words a Flex container shows, in order, for the archive's search."""
    if isinstance(node, dict):
        found = [node["text"]] if node.get("type") in ("text", "span", "button") and isinstance(
            node.get("text"), str) else []
        if node.get("type") == "button" and isinstance(node.get("action"), dict):
            found = [node["action"]["label"]] if isinstance(node["action"].get("label"), str) else []
        for key, value in node.items():
            if key != "action":
                found.extend(_flex_texts(value))
        return found
    if isinstance(node, list):
        return [text for item in node for text in _flex_texts(item)]
    return []


def _flex_message(flex: Any, alt_text: Any) -> dict[str, Any]:
    from linebot.v3.messaging import FlexMessage

    if isinstance(flex, str):
        try:
            flex = json.loads(flex)
        except json.JSONDecodeError as exc:
            raise ValueError(f"flex is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    if not isinstance(flex, dict):
        raise ValueError("flex must be a JSON object: a bubble or a carousel")
    if flex.get("type") == "flex":  # a whole Flex message was given: take its container
        alt_text = alt_text or flex.get("altText")
        flex = flex.get("contents")
        if not isinstance(flex, dict):
            raise ValueError("flex.contents must be a bubble or a carousel")
    if flex.get("type") not in ("bubble", "carousel"):
        raise ValueError('flex must be a bubble or a carousel (its "type" is "bubble" or "carousel")')
    if flex["type"] == "carousel" and not (isinstance(flex.get("contents"), list) and 1 <= len(flex["contents"]) <= 12):
        raise ValueError("a carousel holds 1 to 12 bubbles")
    alt_text = str(alt_text or "").strip()
    if not alt_text:
        raise ValueError("alt_text is required with flex (it is shown in notifications and chat lists)")
    if len(alt_text) > ALT_TEXT_MAX:
        raise ValueError(f"alt_text is longer than {ALT_TEXT_MAX} characters")
    try:
        message = FlexMessage.from_dict({"type": "flex", "altText": alt_text, "contents": flex})
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise ValueError(f"flex is not a valid Flex message: {detail}") from exc
    finished: dict[str, Any] = message.to_dict()
    return finished


class Channel(ChannelBase):
    type = "line"
    secret_fields = ("channel_access_token", "channel_secret")
    required_fields = ("channel_access_token", "channel_secret")
    optional_fields = ("base_url", "rate_per_second")
    webhooks = ("events",)
    variant_fields = ("text", "flex", "alt_text")
    variant_required = (("text", "flex"),)

    def __init__(self, config: dict[str, Any], *, allow_private: bool = False) -> None:
        super().__init__(config, allow_private=allow_private)
        self._api_client: Any = None
        self._api: Any = None

    @classmethod
    def clean_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        from tsunagu.core.errors import ValidationError

        cleaned = super().clean_config(config)
        for key in ("channel_access_token", "channel_secret", "base_url"):
            if key in cleaned and not isinstance(cleaned[key], str):
                raise ValidationError("must be a string", field=f"config.{key}")
            if key in cleaned:
                cleaned[key] = cleaned[key].strip()
        if cleaned.get("base_url"):
            parsed = urlparse(cleaned["base_url"])
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValidationError("must be an http(s) URL", field="config.base_url")
            cleaned["base_url"] = cleaned["base_url"].rstrip("/")
        else:
            cleaned.pop("base_url", None)
        return rate_clean(cleaned)

    @classmethod
    def finish(cls, content: dict[str, Any]) -> dict[str, Any]:
        """LINE message objects (a text message, a Flex message, or both in that order) and the plain text
        the archive keeps. ``ValueError`` for Flex that LINE would refuse."""
        messages: list[dict[str, Any]] = []
        texts: list[str] = []
        text = str(content.get("text") or "")
        if text.strip():
            if len(text) > TEXT_MAX:
                raise ValueError(f"the LINE text is longer than {TEXT_MAX} characters")
            messages.append({"type": "text", "text": text})
            texts.append(text)
        flex = content.get("flex")
        if flex not in (None, "", {}):
            message = _flex_message(flex, content.get("alt_text"))
            messages.append(message)
            texts.extend([message["altText"], *_flex_texts(message["contents"])])
        if not messages:
            raise ValueError("a LINE message needs text or flex")
        return {"messages": messages, "text": "\n".join(texts)}

    # -- sending ---------------------------------------------------------------------------------------

    def _messaging(self) -> Any:
        if self._api is None:
            from linebot.v3.messaging import ApiClient, Configuration, MessagingApi

            configuration = Configuration(host=self.config.get("base_url") or None,
                                          access_token=self.config["channel_access_token"])
            self._api_client = ApiClient(configuration)
            self._api = MessagingApi(self._api_client)
        return self._api

    def send(self, message: Message) -> Outcome:
        from linebot.v3.messaging import PushMessageRequest

        key = retry_key(message.key)
        request = PushMessageRequest.from_dict({"to": message.address, "messages": message.content["messages"]})
        return self._call("push_message_with_http_info", request, key)

    def multicast(self, to: list[str], messages: list[dict[str, Any]], retry_key_: str) -> Outcome:
        """Send ``messages`` (finished LINE message objects) to up to 500 users in one request. The same
        ``retry_key_`` (a UUID, or any key — it is mapped to one) must be given on every retry."""
        from linebot.v3.messaging import MulticastRequest

        if not 1 <= len(to) <= MULTICAST_MAX:
            raise ValueError(f"a multicast goes to 1 to {MULTICAST_MAX} users, not {len(to)}")
        request = MulticastRequest.from_dict({"to": list(to), "messages": messages})
        return self._call("multicast_with_http_info", request, retry_key(retry_key_))

    def _call(self, method: str, request: Any, key: str) -> Outcome:
        import urllib3
        from linebot.v3.messaging import ApiException

        sent_headers = {"X-Line-Retry-Key": key}
        try:
            response = getattr(self._messaging(), method)(request, x_line_retry_key=key, _request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status == 409:
                # LINE took a request with this retry key before (the answer to it was lost): it is sent.
                accepted = _header(exc.headers, "x-line-accepted-request-id") or _header(
                    exc.headers, "x-line-request-id")
                return Outcome(status="sent", provider_id=accepted, headers=sent_headers, detail="already accepted")
            raise _error(exc) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise DeliveryError(f"LINE unreachable: {exc.__class__.__name__}", permanent=False) from exc
        return Outcome(status="sent", provider_id=_header(response.headers, "x-line-request-id"),
                       headers=sent_headers)

    def close(self) -> None:
        if self._api_client is not None:
            self._api_client.close()
        self._api_client = self._api = None

    # -- inbound ---------------------------------------------------------------------------------------

    def verify(self, *, webhook: str, request: InboundRequest) -> None:
        from linebot.v3.webhook import SignatureValidator

        from tsunagu.core.errors import AuthenticationError

        signature = request.headers.get("x-line-signature", "")
        if not signature:
            raise AuthenticationError("the X-Line-Signature header is missing")
        try:
            body = request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AuthenticationError("the X-Line-Signature does not match the body") from exc
        if not SignatureValidator(self.config["channel_secret"]).validate(body, signature):
            raise AuthenticationError("the X-Line-Signature does not match the body")

    def parse(self, *, webhook: str, request: InboundRequest) -> list[StatusReport | CustomerEvent]:
        """Customer events of the webhook's follow, unfollow, message and postback events; other events
        (join, leave, unsend, beacon, ...) and events of no user are left out. LINE's "Verify" button sends
        an empty list of events."""
        from tsunagu.core.errors import ValidationError

        try:
            payload = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValidationError("the body is not JSON", field="body") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
            raise ValidationError("the body has no list of events", field="events")
        found: list[StatusReport | CustomerEvent] = []
        for event in payload["events"]:
            parsed = _customer_event(event) if isinstance(event, dict) else None
            if parsed is not None:
                found.append(parsed)
        return found


def _customer_event(event: dict[str, Any]) -> CustomerEvent | None:
    name = EVENTS.get(event.get("type", ""))
    source: dict[str, Any] = event["source"] if isinstance(event.get("source"), dict) else {}
    user_id, event_id = source.get("userId"), event.get("webhookEventId")
    if name is None or not isinstance(user_id, str) or not user_id or not isinstance(event_id, str) or not event_id:
        return None
    properties: dict[str, Any] = {}
    body: dict[str, Any] = event[event["type"]] if isinstance(event.get(event["type"]), dict) else {}
    if event["type"] == "follow":
        properties["unblocked"] = bool(body.get("isUnblocked", False))
    elif event["type"] == "message":
        properties["message_id"] = str(body.get("id", ""))
        properties["message_type"] = str(body.get("type", ""))
        if body.get("type") == "text":
            properties["text"] = str(body.get("text", ""))
        elif body.get("type") == "sticker":
            properties["sticker"] = f"{body.get('packageId', '')}/{body.get('stickerId', '')}"
    elif event["type"] == "postback":
        properties["data"] = str(body.get("data", ""))
        if isinstance(body.get("params"), dict) and body["params"]:
            properties["params"] = body["params"]
    if source.get("type") in ("group", "room"):
        properties["source"] = source["type"]
        properties[f"{source['type']}_id"] = source.get(f"{source['type']}Id", "")
    if (event.get("deliveryContext") or {}).get("isRedelivery"):
        properties["redelivery"] = True
    at = None
    if isinstance(event.get("timestamp"), int | float):
        at = datetime.fromtimestamp(event["timestamp"] / 1000, tz=UTC)
    return CustomerEvent(receipt=event_id, identity=("external:line_user_id", user_id), event=name,
                         properties=properties, at=at)


def _header(headers: Any, name: str) -> str:
    if not headers:
        return ""
    value = headers.get(name)
    if value is None:  # a plain dict with the server's spelling
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return str(value or "")


def _error(exc: Any) -> DeliveryError:
    status = int(exc.status or 0)
    message, details = "", []
    try:
        body = json.loads(exc.body or b"{}")
        message = str(body.get("message", ""))
        details = [d for d in body.get("details") or [] if isinstance(d, dict)]
    except (ValueError, AttributeError):
        message = ""
    reason = f"LINE {status}" if status else f"LINE unreachable: {exc.reason}"
    if message:
        reason += f": {message}"
    if details:
        reason += " (" + "; ".join(f"{d.get('property', '')}: {d.get('message', '')}" for d in details) + ")"
    if status == 0 or status >= 500:
        return DeliveryError(reason, permanent=False)
    if status == 429:
        # 429 is also "the monthly message limit is reached": no retry in the next minutes can help.
        monthly = "monthly limit" in message.lower()
        return DeliveryError(reason, permanent=monthly, retry_after=None if monthly else _retry_after(exc.headers))
    # 400 (an invalid user id, a message LINE refuses), 401 (token), 403 (plan): permanent. A blocked user
    # is not an error here: LINE accepts the push and drops it, and reports the block as an unfollow.
    bounced = status == 400 and any(str(d.get("property", "")) == "to" for d in details)
    return DeliveryError(reason, permanent=True, bounced=bounced)


def _retry_after(headers: Any) -> float | None:
    value = _header(headers, "retry-after")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
