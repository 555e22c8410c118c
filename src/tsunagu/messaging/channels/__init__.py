"""The channel registry: type name -> implementation class (``messaging/channels/<type>.py``)."""

from __future__ import annotations

import importlib

from tsunagu.messaging.channels.base import ChannelBase

TYPES = ("email", "sms", "line", "webpush", "webhook", "in_app")


def channel_class(type_: str) -> type[ChannelBase]:
    """The class implementing ``type_``; ``KeyError`` for an unknown type."""
    if type_ not in TYPES:
        raise KeyError(type_)
    module = importlib.import_module(f"tsunagu.messaging.channels.{type_}")
    cls: type[ChannelBase] = module.Channel
    return cls
