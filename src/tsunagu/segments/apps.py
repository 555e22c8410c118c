from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "tsunagu.segments"
    label = "segments"
    verbose_name = "Segments"

    def ready(self) -> None:
        # The applier reaction, worker tasks and SQLite functions register themselves on import.
        from tsunagu.segments import handlers, reactions, sqlfunctions  # noqa: F401
