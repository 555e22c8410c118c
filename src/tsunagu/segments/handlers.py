"""Worker tasks of segments (registered on import)."""
