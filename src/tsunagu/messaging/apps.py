from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "tsunagu.messaging"
    label = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        # Job handlers and the applier reaction register themselves on import.
        from tsunagu.core.services import setting_register
        from tsunagu.messaging import handlers, reactions, rules, segment_rules  # noqa: F401
        from tsunagu.segments.facts import consent_check_register
        from tsunagu.segments.rule.sql import consent_sql_register

        consent_check_register(segment_rules.consent_granted)
        consent_sql_register(segment_rules.consent_granted_sql)

        setting_register("quiet_hours", rules.quiet_hours_clean)
        setting_register("frequency_caps", rules.frequency_caps_clean)
        setting_register("holidays", rules.holidays_clean, show=lambda v: v or None)
