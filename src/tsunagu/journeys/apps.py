from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "tsunagu.journeys"
    label = "journeys"
    verbose_name = "Journeys"

    def ready(self) -> None:
        # The applier reaction, the worker's tasks and the webhook job handler register themselves on import.
        from tsunagu.journeys import handlers, reactions  # noqa: F401
