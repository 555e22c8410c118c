from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "tsunagu.events"
    label = "events"
    verbose_name = "events"
