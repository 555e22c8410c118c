"""schemas of messaging."""
