"""api of messaging."""
