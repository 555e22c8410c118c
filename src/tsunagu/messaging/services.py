"""services of messaging."""
