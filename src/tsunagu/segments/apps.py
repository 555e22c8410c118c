from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "tsunagu.segments"
    label = "segments"
    verbose_name = "Segments"

    def ready(self) -> None:
        # The applier reaction, worker tasks and SQLite functions register themselves on import.
        # ``computed`` on every profile the API and the console show (computed traits).
        from tsunagu.customers.selectors import profile_extra_register
        from tsunagu.segments import handlers, reactions, sqlfunctions  # noqa: F401
        from tsunagu.segments.computed_selectors import computed_values_of

        profile_extra_register("computed", computed_values_of)
