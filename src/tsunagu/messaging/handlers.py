"""Job handlers of messaging (registered on import by the app config)."""
