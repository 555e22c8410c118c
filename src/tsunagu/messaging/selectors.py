"""selectors of messaging."""
