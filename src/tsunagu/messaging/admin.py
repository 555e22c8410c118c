"""admin of messaging."""
