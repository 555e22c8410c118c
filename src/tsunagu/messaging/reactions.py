"""Messaging's reaction to applied events (registered on import by the app config)."""
