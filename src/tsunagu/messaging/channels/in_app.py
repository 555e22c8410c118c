"""In-app inbox: the message is stored for the customer's app or website, which reads it through
``GET /api/v1/customers/{id}/inbox``. Storing is delivering: there is no provider to fail."""

from __future__ import annotations

from tsunagu.messaging.channels.base import ChannelBase, Message, Outcome


class Channel(ChannelBase):
    type = "in_app"
    variant_fields = ("title", "body", "url", "button")
    variant_required = (("title", "body"),)

    def send(self, message: Message) -> Outcome:
        return Outcome(status="delivered", provider_id=message.key)
