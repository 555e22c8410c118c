"""The segments API (docs/api.md)."""
