from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "tsunagu.messaging"
    label = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        # Job handlers and the applier reaction register themselves on import.
        from tsunagu.messaging import handlers, reactions  # noqa: F401
