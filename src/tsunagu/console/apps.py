from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "tsunagu.console"
    label = "console"
    verbose_name = "console"
